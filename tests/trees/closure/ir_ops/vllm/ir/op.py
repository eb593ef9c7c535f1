# like vllm/ir/op.py: ops, their implementations by provider, a dispatch priority set once
class IrOp:
    registry = {}

    def __init__(self, name, native):
        self.name = name
        self.impls = {"native": native}
        self._priority = []
        IrOp.registry[name] = self

    def register_impl(self, provider, supported=True):
        def deco(fn):
            if supported:
                self.impls[provider] = fn
            return fn
        return deco

    def set_default(self, priority):
        # vLLM's IrOp refuses a provider that registered no implementation of this op
        assert all(p in self.impls for p in priority), "All providers in priority must be registered implementations."
        self._priority = list(priority)

    def __call__(self, *args):
        provider = self._priority[0] if self._priority else "native"
        return provider, self.impls[provider](*args)


def register_op(f):
    return IrOp(f.__name__, f)
