from vllm.predicates import init_quant, wrap
from vllm.routers import REGISTRY, escaped, flagged, make_layer, released


def target(x):
    r = make_layer(2)
    y = flagged(x) + released(x, flag=x > 100) + escaped(x)
    return type(r).__name__, y, REGISTRY["escaped"](x), wrap(len)("ab"), init_quant()
