def lazy_fn():
    return 7


def not_needed():
    return 8
