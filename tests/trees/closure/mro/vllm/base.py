def used_helper():
    return 1


def unused_helper():
    return 2


class Base:
    def __init__(self):
        self.x = 0

    def used(self):
        return used_helper()

    def unused(self):
        return unused_helper()
