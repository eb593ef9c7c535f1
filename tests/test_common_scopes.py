"""The binding rules A1's references and A7's reachability share (bundler_lib/common/scopes.py)."""

import ast
import symtable

from bundler_lib.common.scopes import (KINDS, alias_name, body_bindings, comprehension_targets, nodes_within,
                                       parameter_names, scope_bindings)
from bundler_lib.graph.index import ImportBinding
from bundler_lib.graph.scopes import _collect_locals
from bundler_lib.package.references import _function_locals


def test_parameter_names_cover_every_kind_of_parameter():
    fn = ast.parse("def f(a, /, b=1, *c, d, e=2, **f): pass").body[0]
    assert parameter_names(fn.args) == ["a", "b", "d", "e", "c", "f"]
    assert parameter_names(ast.parse("lambda x, *y: x", mode="eval").body.args) == ["x", "y"]


def test_an_import_clause_binds_its_alias_or_its_top_package():
    names = [al for st in ast.parse("import a.b.c\nimport a.b as d\nfrom m.n import x as y, z").body
             for al in st.names]
    assert [alias_name(al) for al in names] == ["a", "d", "y", "z"]


def test_comprehension_targets_are_the_names_its_for_clauses_bind():
    comp = ast.parse("[0 for (x, *y) in a for o.attr in b for d[k] in c]", mode="eval").body
    # `o.attr` and `d[k]` bind nothing: o, d and k are read from the enclosing scope
    assert comprehension_targets(comp.generators) == {"x", "y"}


def _kinds(src: str) -> list[tuple[str, str]]:
    fn = ast.parse(src).body[0]
    return [(b.name, b.kind) for b in scope_bindings(fn)]


def test_each_kind_of_binding_is_yielded_once_in_source_order():
    src = """
def f(p, *v):
    a, (b, *c) = x.attr = d[k] = 1
    e += 1
    g: int
    del h
    import i.j, k2 as l
    from m import n as o, q
    def r(): pass
    class s: pass
    for t in u: pass
    with w as (y, z): pass
    try: pass
    except E as err: pass
    match 0:
        case [mas, *mst]: pass
        case {"k": 1, **mrest}: pass
    if (wal := 1): pass
    global gl
    nonlocal nl
    [ct for ct in u if (cw := ct)]
"""
    assert _kinds(src) == [
        ("p", "param"), ("v", "param"), ("a", "assign"), ("b", "assign"), ("c", "assign"), ("e", "assign"),
        ("g", "assign"), ("h", "del"), ("i", "import"), ("l", "import"), ("o", "import"), ("q", "import"),
        ("r", "def"), ("s", "class"), ("t", "for"), ("y", "with"), ("z", "with"), ("err", "except"),
        ("mas", "match"), ("mst", "match"), ("mrest", "match"), ("wal", "walrus"), ("gl", "global"),
        ("nl", "nonlocal"), ("ct", "comprehension"), ("cw", "walrus")]
    assert set(KINDS) == {k for _, k in _kinds(src)}


def test_a_nested_scope_binds_its_name_and_only_what_the_enclosing_scope_evaluates():
    src = """
def f():
    @deco(dd := 1)
    def g(x=(df := 2), *, y=(dk := 3)):
        inner = 1
    class C(base(cb := 4), metaclass=meta(ck := 5)):
        attr = 1
    lam = lambda a=(ld := 6): (lw := a)
"""
    # a definition's name comes before what it evaluates (`inner`, `attr`, `lw` are the nested scopes')
    assert _kinds(src) == [("g", "def"), ("dd", "walrus"), ("df", "walrus"), ("dk", "walrus"), ("C", "class"),
                           ("cb", "walrus"), ("ck", "walrus"), ("lam", "assign"), ("ld", "walrus")]
    lam = ast.parse(src).body[0].body[-1].value
    assert [(b.name, b.kind) for b in scope_bindings(lam)] == [("a", "param"), ("lw", "walrus")]


def test_a_star_import_binds_no_name():
    assert list(body_bindings(ast.parse("from m import *").body)) == []


_NESTED = """
def outer():
    nl = 0
    def f(p, *v):
        a, (b, *c) = x.attr = d[k] = 1
        e += 1
        g: int
        del h
        import i.j, k2 as l
        for t in u: pass
        with w as (y, z): pass
        try: pass
        except E as err: pass
        match 0:
            case [mas, *mst]: pass
            case {"k": 1, **mrest}: pass
        def r(): pass
        global gl
        nonlocal nl
        gl = [ct for ct in u if (cw := ct)]
"""


def test_a7_policy_gives_the_locals_cpython_gives():
    fn = ast.parse(_NESTED).body[0].body[1]
    table = symtable.symtable(_NESTED, "m.py", "exec").get_children()[0].get_children()[0]
    assert _function_locals(fn) == {s.get_name() for s in table.get_symbols() if s.is_local()}
    assert {"ct", "gl", "nl"}.isdisjoint(_function_locals(fn))


class _Index:
    """Imports from `repo...` are repo-local, the rest external."""

    def import_bindings(self, info, node, top):
        mod = node.module if isinstance(node, ast.ImportFrom) else None
        return [ImportBinding(al.asname or al.name, mod, al.name, not (mod or al.name).startswith("repo"), node, top)
                for al in node.names]


def test_a1_policy_locals_imports_globals_and_single_assignments():
    src = """
from repo.a import shared
import ext
from repo.b import gone
global gone
one = f()
two = 1
two = 2
three = 3
def three(): pass
for it in xs: pass
[co for co in xs]
nonlocal nl
if c:
    from repo.c import shared
    from repo.d import shared
"""
    local, imports, globals_, single = _collect_locals(ast.parse(src).body, _Index(), None, set())
    assert local == {"ext", "one", "two", "three", "it"}  # no comprehension target, `global`, `nonlocal` name
    assert globals_ == {"gone"}
    # a name several repo-local imports bind: the last statement importing it, within it the first import
    assert {k: b.module for k, b in imports.items()} == {"shared": "repo.c"}
    assert set(single) == {"one"}


def test_nodes_within_is_ast_walk_without_contexts_and_operators():
    src = """
@deco(k=v)
def f(a, *, b=-1, **kw):
    x: int = a + b if not a and b < 2 else {**kw, "k": [y for y in kw]}
    del x
    async def g(): await h()
    match a:
        case [1, *rest] | {"k": _, **more}: pass
"""
    tree = ast.parse(src)
    tokens = (ast.expr_context, ast.operator, ast.boolop, ast.unaryop, ast.cmpop)
    expected = [n for n in ast.walk(tree) if not isinstance(n, tokens)]
    got = nodes_within(tree)
    assert len(got) == len(expected) and {id(n) for n in got} == {id(n) for n in expected}
