from typing import ClassVar, NamedTuple


class _Shape(NamedTuple):
    row: int
    col: int


class Shape(_Shape):
    PER_TOKEN: ClassVar["Shape"]


Shape.PER_TOKEN = Shape(1, -1)


class Limits:
    MAX_TOKENS = 512
