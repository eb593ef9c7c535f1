"""The binding rules A1's references and A7's reachability share (bundler_lib/common/scopes.py)."""

import ast

from bundler_lib.common.scopes import alias_name, comprehension_targets, parameter_names


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
