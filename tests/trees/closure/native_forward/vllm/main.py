from vllm.custom_op import CustomOp


class Rotate(CustomOp):
    def __init__(self, shift):
        super().__init__()
        self.shift = shift

    def forward_native(self, x, scale=1):
        return (x + self.shift) * scale

    def forward_cuda(self, x, scale=1):
        # built from another repository: no source in the tree
        from vllm.vllm_flash_attn.layers.rotary import apply_rotary_emb

        return apply_rotary_emb(x, self.shift, scale)


class Shifted(Rotate):
    # its forward_native is its base's
    def forward_cuda(self, x, scale=1):
        from vllm.vllm_flash_attn.layers.rotary import apply_rotary_emb

        return apply_rotary_emb(x, self.shift + 1, scale)


class Guarded(CustomOp):
    # a compiled import with its own fallback: the platform forward stays as written
    def forward_native(self, x):
        return -x

    def forward_cuda(self, x):
        try:
            from vllm._fast_ops import negate
        except ImportError:
            return x * 10
        return negate(x)


class NoNative(CustomOp):
    # no forward_native below CustomOp's (which raises): the path keeps raising ImportError
    def forward_cuda(self, x):
        from vllm.vllm_flash_attn.layers.rotary import apply_rotary_emb

        return apply_rotary_emb(x)


def target(x, no_native=False):
    if no_native:
        return NoNative()(x)
    return Rotate(2)(x, scale=3), Shifted(1)(x), Guarded()(x)
