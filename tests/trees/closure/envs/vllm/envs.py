import os


def helper_a():
    return int(os.environ.get("A", "1"))


def helper_b():
    return 2


environment_variables = {
    # the A flag
    "A": lambda: helper_a(),
    # the B flag
    "B": lambda: helper_b(),
    "C": (
        lambda: helper_b()
    ),
}


def __getattr__(name):
    if name in environment_variables:
        return environment_variables[name]()
    raise AttributeError(name)
