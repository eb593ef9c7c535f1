def compute(x):
    return x + 1


def other(x):
    return x * 2


def never(x):
    return x
