# imports nothing of the tree: embedded whole where used as a module object
import math


def run(x):
    return math.floor(x) + 10
