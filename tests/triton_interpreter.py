"""Code a test's subprocess runs first to run Triton kernels on CPU in Triton's interpreter (TRITON_INTERPRET=1, set
before triton is imported). The interpreter turns a loaded scalar used as a loop bound (`tl.range(0, n)`, vLLM's
prefix_prefill) into an int with int() of its 1-element array, which NumPy 2 refuses: it takes the element instead.
It computes bfloat16 wrong: run the kernels in float16."""

PREAMBLE = '''
import os
os.environ["TRITON_INTERPRET"] = "1"
from triton.runtime import interpreter as _interpreter
_patch = _interpreter._patch_lang_tensor


def _as_index(tensor, scope):
    _patch(tensor, scope)
    scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))


_interpreter._patch_lang_tensor = _as_index
'''
