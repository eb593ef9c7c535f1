from ..op import register_op


@register_op
def rms_norm(x):
    return x / 2


@register_op
def scale(x):
    return x * 3


@register_op
def gelu(x):   # no provider implements it: native only
    return x + 1
