import ast

from bundler_lib.bind.leftovers import Leftovers

# line breaks the parser splits at (\r\n, \r, \n) and characters str.splitlines also splits at (\f, \x1c, \u2028)
TEXT = ('x = 1\r\ny = "\x0c\x1c"\rz = 2  # \u2028 \f\n'
        'import importlib\ntry:\n    importlib.import_module(  "vllm.a"  )\nexcept ImportError:\n    pass\n'
        'importlib.import_module("""vllm.\nb""")\n__import__(\'vllm\')')


def test_a_probe_names_its_argument_as_written():
    lo = Leftovers(TEXT)
    lo.visit(ast.parse(TEXT))
    assert lo.probes == [('importlib.import_module("vllm.a")', 6)]
    assert lo.imports == [('importlib.import_module("""vllm.\nb""")', 9), ("__import__('vllm')", 11)]


def test_segments_are_those_of_get_source_segment():
    lo = Leftovers(TEXT)
    for n in ast.walk(ast.parse(TEXT)):
        if isinstance(n, ast.expr):
            assert lo._segment(n) == ast.get_source_segment(TEXT, n)
