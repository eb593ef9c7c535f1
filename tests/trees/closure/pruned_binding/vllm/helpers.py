def fallback(x):
    return x + 1


def literal_helper(x):
    return x * 100
