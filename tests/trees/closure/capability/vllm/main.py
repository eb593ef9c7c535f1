from vllm.platforms import current_platform


def at_least_90():
    return "sm90+"


def below_90():
    return "pre-sm90"


def exactly_90():
    return "sm90"


def not_90():
    return "not sm90"


def family_9x():
    return "sm9x"


def other_family():
    return "not sm9x"


def target():
    if current_platform.has_device_capability(90):
        a = at_least_90()
    else:
        a = below_90()
    if current_platform.is_device_capability(90):
        b = exactly_90()
    else:
        b = not_90()
    if current_platform.is_device_capability_family(90):
        c = family_9x()
    else:
        c = other_family()
    return a, b, c
