"""The import statements of an inlined section (A2's Python, A3's Triton): which are always available where a
bundle runs, which fall back on a drop-in replacement, which are guarded as optional, which the section's text
does not name; and which of A1's nodes need an optional package at import time."""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from pathlib import Path
from types import ModuleType

from bundler_lib.common import einops_fallback

# Annotations of the inlined code are never evaluated (A1 does not follow them): the bundle must say so.
FUTURE = "from __future__ import annotations"

# Always available where a bundle runs: the standard library and these.
REQUIRED_TOPS = {"torch", "triton", "typing_extensions"}


def top_package(stmt: str) -> str:
    """The top-level package an import statement imports from."""
    return stmt.split()[1].split(".")[0]


def is_required(stmt: str) -> bool:
    top = top_package(stmt)
    return top in REQUIRED_TOPS or top in sys.stdlib_module_names or top == "__future__"


# Third-party modules with a drop-in replacement where every bundle runs (the standard library, or what the
# declared torch itself ships): module -> replacement module. `import M as x`, `from M import names` and
# `from P import m` (M = P.m) fall back to the replacement when M is not installed.
# - `regex` -> `re`;
# - `packaging.version` -> `torch._vendor.packaging.version`: torch vendors packaging's `version` module
#   (Version, InvalidVersion, parse) since torch 2.2 (pytorch/pytorch#114108), so that torch itself needs no
#   `packaging`; bundles declare torch >= 2.11. vLLM compares torch versions with it at import time
#   (`is_torch_equal_or_newer`, `HAS_OPAQUE_TYPE`), so a guard alone would leave a NameError.
FALLBACKS = {
    "regex": "re",
    "packaging.version": "torch._vendor.packaging.version",
}


# Third-party modules with a drop-in replacement written in this project: module -> the project module a bundle
# embeds where the module is not installed (imported here so that each stage's sandbox carries its file). Its
# text becomes, once per bundle, the body of a function `_bundled_<module>()` returning a module of the names in
# its `__all__`; an import falls back on it only where every name it takes is in that `__all__`.
# - `einops` -> `einops_fallback` (`rearrange`, `repeat`): vLLM reads einops at run time (Mamba2's chunked scan,
#   gated delta-net, lightning attention, vision code); a guard alone would leave a NameError.
EMBEDDED: dict[str, ModuleType] = {"einops": einops_fallback}


def bundle_lacks(package: str) -> bool:
    """A top-level package that a bundle neither requires nor replaces (FALLBACKS, EMBEDDED): the bundle cannot count
    on it (its guarded imports bind the absent package's stand-ins)."""
    return not is_required(f"import {package}") and all(m.split(".")[0] != package for m in (*FALLBACKS, *EMBEDDED))


def _embedded_file(module: str) -> str:
    return EMBEDDED[module].__name__.replace(".", "/") + ".py"


def indent_block(text: str) -> str:
    """Indent code by 4 spaces, leaving the inside of multi-line strings as it is."""
    inside: set[int] = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
                inside.update(range(tok.start[0] + 1, tok.end[0] + 1))
    except (tokenize.TokenError, SyntaxError):
        pass
    lines = text.splitlines(keepends=True)
    return "".join(ln if (i + 1 in inside or not ln.strip()) else "    " + ln for i, ln in enumerate(lines))


def embedded_definition(module: str) -> str:
    """The function a bundle carries for an embedded replacement: the project module's text as its body."""
    body = indent_block(Path(EMBEDDED[module].__file__).read_text(encoding="utf-8"))
    return (f"def _bundled_{module}():\n"
            f"    # {module} where it is not installed: vllm-bundler's {_embedded_file(module)}, its\n"
            f"    # text as this function's body; returns a module of the names in its __all__\n"
            f"{body.rstrip()}\n"
            f"    import types\n"
            f"    return types.SimpleNamespace(**{{n: v for n, v in locals().items() if n in __all__}})")


def _clauses(stmt: str) -> list[tuple[str, str | None, str]]:
    """(what each clause imports, its `as` name or None, the name it binds): `import a.b as c, d.e` gives
    ("a.b", "c", "c"), ("d.e", None, "d"); `from m import (x as y, z)` gives ("x", "y", "y"), ("z", None, "z")."""
    is_import = stmt.split()[0] == "import"
    listed = stmt.split(None, 1)[1] if is_import else stmt.split(" import ", 1)[1].strip("() ")
    out = []
    for part in listed.split(","):
        p = part.split()
        if p:
            alias = p[2] if len(p) == 3 and p[1] == "as" else None
            out.append((p[0], alias, alias or (p[0].split(".")[0] if is_import else p[0])))
    return out


def _embedded_fallback(stmt: str) -> tuple[str, str] | None:
    """(the module, the statements binding the same names from its embedded replacement), or None."""
    words, clauses = stmt.split(), _clauses(stmt)
    if words[0] == "import" and len(clauses) == 1 and clauses[0][0] in EMBEDDED:
        module, _, name = clauses[0]
        return module, f"{name} = _bundled_{module}()"
    if words[0] == "from" and words[1] in EMBEDDED and words[2] == "import":
        if all(name in EMBEDDED[words[1]].__all__ for name, _, _ in clauses):
            return words[1], "\n".join(f"{bound} = _bundled_{words[1]}().{name}" for name, _, bound in clauses)
    return None


def fallback_of(stmt: str) -> str | None:
    """The statement binding the same names from the replacement module, or None when there is none."""
    embedded = _embedded_fallback(stmt)
    if embedded:
        return embedded[1]
    words = stmt.split()
    if len(words) == 4 and words[0] == "import" and words[2] == "as" and words[1] in FALLBACKS:
        return f"import {FALLBACKS[words[1]]} as {words[3]}"
    if len(words) >= 4 and words[0] == "from" and words[2] == "import":
        mod, names = words[1], stmt.split(" import ", 1)[1]
        if mod in FALLBACKS:
            return f"from {FALLBACKS[mod]} import {names}"
        # from P import m [as x], where P.m is a module with a replacement
        one = names.split()
        if (len(one) == 1 or (len(one) == 3 and one[1] == "as")) and f"{mod}.{one[0]}" in FALLBACKS:
            parent, _, leaf = FALLBACKS[f"{mod}.{one[0]}"].rpartition(".")
            alias = one[2] if len(one) == 3 else one[0]
            return f"from {parent} import {leaf}" + (f" as {alias}" if alias != leaf else "")
    return None


def external_statements(stmts: list[str], runtime_only: set[str], hard: set[str] = frozenset(),
                        annotation_only: set[str] = frozenset()) -> tuple[list[str], list[str]]:
    """(statements, notes): imports of optional packages that are read only at run time are guarded, so
    the bundle imports without them; those read only by annotations (never evaluated) are left out."""
    out, notes = [], []
    for st in stmts:
        # A name of the standard library or torch/triton bound only for annotations (which the bundle never
        # evaluates) is not imported at all: emitted, it is an import nothing in the bundle uses (A7 fails on
        # those). A dotted `import a.b` binds `a`, which other code may read: it stays.
        if st in annotation_only and (st.startswith("from ") or " as " in st or not is_required(st)):
            notes.append(f"import read only by annotations, left out (annotations are never evaluated): {st}")
        elif is_required(st):
            out.append(st)
        elif _embedded_fallback(st):
            module, binds = _embedded_fallback(st)
            if embedded_definition(module) not in out:
                out.append(embedded_definition(module))
            out.append(f"try:\n    {st}\nexcept ImportError:  # drop-in replacement written in this project\n"
                       + "".join(f"    {line}\n" for line in binds.splitlines()).rstrip("\n"))
            notes.append(f"import with a replacement the bundle embeds (_bundled_{module}, from "
                         f"{_embedded_file(module)}): {st}")
        elif fallback_of(st):
            out.append(f"try:\n    {st}\nexcept ImportError:  # drop-in replacement\n    {fallback_of(st)}")
            notes.append(f"import with a fallback every bundle has ({fallback_of(st)}): {st}")
        elif st in runtime_only or st not in hard:
            if ABSENT_DEFINITION not in out:
                out.append(ABSENT_DEFINITION)
            out.append(f"try:\n    {st}\nexcept ImportError:  # optional package\n"
                       + "".join(f"    {line}\n" for line in absent_bindings(st)).rstrip("\n"))
            notes.append(f"optional import guarded (its names bound to {ABSENT}(<package>) without it): {st}")
        else:
            out.append(st)
            notes.append(f"import-time dependency on a package outside torch/triton/stdlib: {st}")
    return out, notes


# An optional package's names where it is not installed: stand-ins that let the code around them run as it would
# without the package, and fail loudly where the package is needed. An attribute is a class that nothing is an
# instance of (`isinstance(data, np.ndarray)` is False, as for every value a bundle makes without numpy); a call,
# arithmetic or a class deriving from it raises ModuleNotFoundError naming the package, an ImportError: a definition that needs the package at
# import time is skipped as before (A2's `except (ImportError, NameError, AttributeError)`). Left unbound, either
# would be a NameError.
ABSENT = "_bundle_absent"
ABSENT_DEFINITION = f'''def {ABSENT}(package, name=None):
    # an optional package that is not installed: its attributes are classes nothing is an instance of; calling one,
    # or computing with it, raises ModuleNotFoundError (an ImportError) naming the package
    def needs(cls, *args, **kwargs):
        raise ModuleNotFoundError(f"{{cls.__name__}} needs the package {{package!r}}, which is not installed: "
                                  f"pip install {{package}}", name=package)

    def subclass(mcs, name, bases, namespace, **kwargs):
        if bases:  # a class deriving from one (`class P(msgspec.Struct, omit_defaults=True)`) needs the package
            needs(bases[0])
        return type.__new__(mcs, name, bases, namespace)

    def attribute(cls, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return absent(f"{{cls.__name__}}.{{attr}}", (), {{}})

    binary = ("add", "sub", "mul", "matmul", "truediv", "floordiv", "mod", "pow", "lshift", "rshift", "and", "or",
              "xor")
    ops = ("call", "neg", "pos", "invert", "abs", "iter", "getitem", "len", "index", "int", "float", "lt", "le",
           "gt", "ge") + binary + tuple("r" + op for op in binary)
    absent = type("_Absent", (type,), {{"__new__": subclass, "__getattr__": attribute,
                                        **{{f"__{{op}}__": needs for op in ops}}}})
    return absent(name or package, (), {{}})'''


def absent_bindings(stmt: str) -> list[str]:
    """`name = _bundle_absent(package, dotted)` for each name the import statement binds."""
    package, words = top_package(stmt), stmt.split()
    out = []
    for name, alias, bound in _clauses(stmt):
        dotted = (name if alias else bound) if words[0] == "import" else f"{words[1]}.{name}"
        out.append(f"{bound} = {ABSENT}({package!r}, {dotted!r})")
    return out


def is_absent_binding(st: ast.stmt) -> bool:
    """`name = _bundle_absent(...)`: the stand-in an optional import's handler binds."""
    return (isinstance(st, ast.Assign) and isinstance(st.value, ast.Call) and isinstance(st.value.func, ast.Name)
            and st.value.func.id == ABSENT)


def _bound(stmt: str) -> tuple[list[str], str | None]:
    """(names the import statement binds, the dotted chain an `import a.b.c` without alias needs the code to
    name, else None)."""
    clauses, chain = _clauses(stmt), None
    if stmt.split()[0] == "import":
        for name, alias, _ in clauses:
            chain = name if alias is None and "." in name else chain
    return [bound for _, _, bound in clauses], chain


def named_imports(stmts: list[str], text: str) -> tuple[list[str], list[str]]:
    """(the statements the section's text names, notes): an import statement nothing in the text names (A1 lists
    a file's imports for every node that reads the name they bind: `import torch.distributed._symmetric_memory`
    binds `torch`) would be an import nothing in the bundle uses. A dotted `import a.b.c` is kept where the text
    names `a.b.c` outside import statements; dropped where it does not, with `import a` in its place when the text
    reads `a` and nothing else binds it. Any other mention (a comment, a string) keeps an import: this only removes
    what is surely unused."""
    kept, notes, dropped_tops = [], [], []
    # where a submodule's chain counts as named: not in import statements (`import a.b.c as x` names x)
    uses = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(("import ", "from ")))
    for st in stmts:
        if st.startswith("from __future__"):
            kept.append(st)
            continue
        names, chain = _bound(st)
        if chain is not None and len(names) == 1:
            if re.search(r"(?<![\w.])" + re.escape(chain) + r"\b", uses):
                kept.append(st)
            else:
                dropped_tops.append(names[0])
                notes.append(f"import of a submodule nothing names, left out: {st}")
            continue
        if any(re.search(r"(?<![\w.])" + re.escape(n) + r"\b", text) for n in names):
            kept.append(st)
        else:
            notes.append(f"import of names nothing in the section names, left out: {st}")
    bound = {n for st in kept for n in _bound(st)[0]}
    for top in dict.fromkeys(dropped_tops):
        if top not in bound and re.search(r"(?<![\w.])" + re.escape(top) + r"\b", uses):
            kept.append(f"import {top}")
            bound.add(top)
    return sorted(set(kept), key=kept.index), notes


def hard_imports(g: dict) -> set[str]:
    """Imports the target symbol itself needs at import time: never guarded."""
    return {st for n in g["python_nodes"] if n["name"] == g["symbol"] and n["file"] == g.get("def_file")
            for st in n.get("importtime_imports", [])}


def optional_nodes(g: dict) -> dict[str, list[str]]:
    """Nodes that need, at import time, a package a bundle cannot count on (directly or through another
    such node): {id: [import statements]}. The target symbol itself is never optional."""
    nodes = g["python_nodes"]
    out: dict[str, list[str]] = {}
    for n in nodes:
        bad = [st for st in n.get("importtime_imports", []) if not is_required(st) and not fallback_of(st)]
        if bad:
            out[n["id"]] = bad
    changed = True
    while changed:
        changed = False
        for n in nodes:
            if n["id"] in out:
                continue
            hit = [d for d in n.get("importtime_deps", []) if d in out]
            if hit:
                out[n["id"]] = sorted({st for d in hit for st in out[d]})
                changed = True
    for n in nodes:
        if n["name"] == g["symbol"] and n["file"] == g.get("def_file"):
            out.pop(n["id"], None)
    return out


def section_imports(g: dict, nodes: list[dict], text: str) -> tuple[list[str], list[str]]:
    """(the import statements a section of `nodes` rendered as `text` needs, notes): those its text names,
    sorted, then guarded, given their fallback or left out as `external_statements` decides."""
    stmts = sorted({imp for n in nodes for imp in n.get("imports", [])})
    stmts, used_notes = named_imports(stmts, text)
    stmts, notes = external_statements(sorted(stmts), set(g.get("imports_runtime_only", [])), hard_imports(g),
                                       set(g.get("imports_annotation_only", [])))
    return stmts, used_notes + notes


def catches_import_error(h: ast.ExceptHandler) -> bool:
    """The handler catches an ImportError (bare, or naming ImportError, ModuleNotFoundError, Exception, ...)."""
    names = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
    return h.type is None or any((n.id if isinstance(n, ast.Name) else n.attr)
                                 in ("ImportError", "ModuleNotFoundError", "Exception", "BaseException")
                                 for n in names if isinstance(n, (ast.Name, ast.Attribute)))
