HAS_FAST = True


def helper():
    return "helper"
