class PlainRouter:
    def __init__(self, k):
        self.k = k


class CustomRouter:
    def __init__(self, fn):
        self.fn = fn


class BiasRouter:
    def __init__(self, bias):
        self.bias = bias


class FlagDep:
    def __init__(self, x):
        self.x = x


class ReleasedDep:
    def __init__(self, x):
        self.x = x * 2


class EscapedDep:
    def __init__(self, x):
        self.x = x


def make_state():
    return None
