# imports the tree: a bundle cannot embed it as a module object
from vllm.pkg.helper import double


def run(x):
    return double(x) + 1
