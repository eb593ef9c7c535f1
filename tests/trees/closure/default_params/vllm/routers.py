from vllm.deps import (
    BiasRouter,
    CustomRouter,
    EscapedDep,
    FlagDep,
    PlainRouter,
    ReleasedDep,
)


def make_router(top_k, custom_fn=None, bias=None, scoring="softmax"):
    if custom_fn is not None:
        return CustomRouter(custom_fn)
    if bias is not None or scoring == "sigmoid":
        return BiasRouter(bias)
    return PlainRouter(top_k)


def make_layer(top_k, custom_fn=None, bias=None):
    # forwards its own defaults: still the defaults at make_router
    return make_router(top_k, custom_fn=custom_fn, bias=bias)


def flagged(x, flag=False):
    if flag:
        return FlagDep(x)
    return x


def released(x, flag=False):
    if flag:
        return ReleasedDep(x).x
    return x


def escaped(x, extra=None):
    if extra is not None:
        return EscapedDep(x)
    return x


REGISTRY = {"escaped": escaped}   # a value: any caller may pass `extra`
