class FlagDep:
    def __init__(self, x):
        self.x = x


class TypedDep:
    def __init__(self, x):
        self.x = x * 10


class ValueDep:
    def __init__(self, x):
        self.x = x * 100


def flagged(x, flag=False):
    if flag:
        return FlagDep(x).x
    return x


def typed(x, flag=False):
    if flag is not False:
        return TypedDep(x).x
    return x


def as_value(x, flag=False):
    if flag:
        return ValueDep(x).x
    return x


HANDLERS = [as_value]   # a value: any caller may pass `flag`


def target(x):
    # flagged: the default passed as its literal, or omitted; typed: 0 equals False but is not False
    return flagged(x, flag=False) + flagged(x) + typed(x, flag=0) + as_value(x) + HANDLERS[0](x, True)
