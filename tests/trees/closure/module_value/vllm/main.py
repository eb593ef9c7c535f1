def heavy_module():
    from vllm.pkg import heavy

    return heavy


def light_module():
    from vllm.pkg import light

    return light


def target(x, fast=True):
    if fast:
        return light_module().run(x)
    return heavy_module().run(x)
