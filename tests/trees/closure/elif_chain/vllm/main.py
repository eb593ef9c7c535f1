from vllm.platforms import current_platform


def window(sliding_window=None):
    if sliding_window is None:
        out = (-1, -1)
    elif current_platform.is_rocm():
        out = ("amd", sliding_window)
    else:
        out = (sliding_window - 1, 0)
    return out


def chain(x=0):
    if x == 1:
        out = "one"
    elif current_platform.is_rocm():
        out = "amd"
    elif x == 2:
        out = "two"
    else:
        out = "other"
    return out


def taken(x=0):
    if x == 1:
        out = "one"
    elif not current_platform.is_rocm():
        out = "cuda"
    else:
        out = "amd"
    return out


def target(sliding_window=None, x=0):
    return window(sliding_window), chain(x), taken(x), both_decided()


def both_decided():
    if current_platform.is_rocm():
        return "amd"
    elif current_platform.is_rocm():
        return "amd again"
    else:
        return "default"
