"""Where inlined code names its own module's directory (`os.path.dirname(__file__)`, `Path(__file__).parent`):
A3 finds these anchors and embeds the data files read through them; A5 rewrites each to a call of the data
section's helper. Both read the names of that section and of A3's data artifacts from here."""

from __future__ import annotations

import ast

from bundler_lib.common.names import dotted

DATA_PY = "A3.data.py"
DATA_JSON = "A3.data.json"

HELPER = "_bundle_data_dir"            # the anchor `os.path.dirname(__file__)` becomes HELPER("<module dir>")
PATH_HELPER = "_bundle_data_path"      # the anchor `Path(__file__).parent` becomes PATH_HELPER("<module dir>")
SECTION_NAMES = (HELPER, PATH_HELPER, "_BUNDLE_DATA_FILES", "_BUNDLE_DATA_KEY", "_BUNDLE_DATA_ROOT")


def is_file_name(node) -> bool:
    """The name `__file__`."""
    return isinstance(node, ast.Name) and node.id == "__file__"


def _file_ref(node) -> bool:
    """`__file__`, `os.path.realpath(__file__)` or `os.path.abspath(__file__)`."""
    return is_file_name(node) or (isinstance(node, ast.Call)
                                  and dotted(node.func) in ("os.path.realpath", "os.path.abspath")
                                  and len(node.args) == 1 and not node.keywords and is_file_name(node.args[0]))


def anchor_kind(node) -> str | None:
    """"str" for `os.path.dirname(<__file__ ref>)`, "path" for `[pathlib.]Path(__file__)[.resolve()].parent`,
    else None: an expression that means the directory of the module it is written in."""
    if isinstance(node, ast.Call) and dotted(node.func) == "os.path.dirname" and len(node.args) == 1 \
            and not node.keywords and _file_ref(node.args[0]):
        return "str"
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        v = node.value
        if isinstance(v, ast.Call) and not v.args and not v.keywords and isinstance(v.func, ast.Attribute) \
                and v.func.attr in ("resolve", "absolute"):
            v = v.func.value
        if isinstance(v, ast.Call) and dotted(v.func) in ("Path", "pathlib.Path") and len(v.args) == 1 \
                and not v.keywords and is_file_name(v.args[0]):
            return "path"
    return None


def helper_call(kind: str, module_dir: str) -> str:
    return f"{HELPER if kind == 'str' else PATH_HELPER}({module_dir!r})"
