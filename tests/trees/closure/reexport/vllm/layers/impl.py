import math


class Thing:
    def __init__(self):
        self.v = math.sqrt(4.0)


class Other:
    pass
