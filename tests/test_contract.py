"""The typed contract of A1.graph.json (bundler_lib/common/contract.py): the docs list the same fields, A1's
graphs conform, and the one loader names the artifact and the field on a bad graph."""

import dataclasses
import json
import re
import typing
from pathlib import Path

import pytest

from bundler_lib.common import contract
from bundler_lib.errors import StageError
from bundler_lib.graph import build
from tests.test_closure_helpers import TREES

DOC = Path(__file__).resolve().parents[1] / "docs" / "stage-contract.md"


def _section() -> str:
    text = DOC.read_text()
    start = text.index("## A1.graph.json")
    return text[start:text.index("\n## ", start + 1)]


def _strip(text: str, open_: str, close: str) -> str:
    pat = re.compile(re.escape(open_) + "[^" + re.escape(open_ + close) + "]*" + re.escape(close))
    while pat.search(text):
        text = pat.sub("", text)
    return text


def _doc_top_fields(section: str) -> list[str]:
    """The field names the section lists: backticked names heading a bullet or an item after `, ` / `; `
    (parenthesised and braced text left out)."""
    body = _strip(_strip(section.split("\n", 1)[1], "(", ")"), "{", "}")
    body = body[body.index("\n- ") + 1:]   # from the first bullet
    return re.findall(r"(?:^- |,\s+|;\s+)`([a-z_]+)`(?=\s*[,;:.]|\s*$)", body, re.M)


def _braces_after(section: str, name: str) -> str:
    """The first `{...}` (balanced) after the field's first mention."""
    i = section.index(f"`{name}`")
    i = section.index("{", i)
    depth = 0
    for j in range(i, len(section)):
        depth += {"{": 1, "}": -1}.get(section[j], 0)
        if depth == 0:
            return section[i + 1:j]
    raise AssertionError(f"unbalanced braces after {name}")


def _doc_record(shape: str) -> dict[str, bool]:
    """{field: optional} of a `{a, b: [...], c?}` shape."""
    items, depth, cur = [], 0, ""
    for ch in shape:
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    out = {}
    for it in items:
        name = it.split(":")[0].strip()
        out[name.rstrip("?")] = name.endswith("?")
    return out


def _record_types():
    hints = typing.get_type_hints(contract.Graph)
    for f in dataclasses.fields(contract.Graph):
        args = typing.get_args(hints[f.name])
        if args and dataclasses.is_dataclass(args[0]):
            yield f.name, args[0]


def _optional(cls) -> dict[str, bool]:
    return {f.name: not (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
            for f in dataclasses.fields(cls)}


def test_doc_lists_the_contract_fields():
    section = _section()
    assert _doc_top_fields(section) == contract.fields_of(contract.Graph)
    records = dict(_record_types())
    assert set(records) == {"python_nodes", "triton_kernels", "cuda_ops", "python_custom_ops", "guards"}
    for name, cls in records.items():
        assert _doc_record(_braces_after(section, name)) == _optional(cls), name
    # the call sites inside cuda_ops
    shape = _braces_after(section, "cuda_ops")
    assert _doc_record(shape[shape.index("[{") + 2:shape.index("}]")]) == _optional(contract.CallSite)


def test_a1_graphs_conform():
    for tree in ("relative", "decorator", "triton", "default_params", "guards"):
        g = build(TREES / tree, "target" if tree not in ("decorator",) else "Target")
        t = contract.typed(json.loads(json.dumps(g)))
        assert [n.id for n in t.python_nodes] == [n["id"] for n in g["python_nodes"]]
        assert t.files == tuple(g["files"]) and t.symbol == g["symbol"]


def _graph(**over):
    g = build(TREES / "decorator", "Target")
    g = json.loads(json.dumps(g))
    g.update(over)
    return g


@pytest.mark.parametrize("mutate, field, problem", [
    (lambda g: g["python_nodes"][1].__setitem__("line", "12"), "python_nodes[1].line", "expected int, got str"),
    (lambda g: g["python_nodes"][0].pop("emit_name"), "python_nodes[0].emit_name", "missing"),
    (lambda g: g.__setitem__("files", "vllm/layer.py"), "files", "expected a list, got str"),
    (lambda g: g["cuda_ops"][0]["call_sites"][0].__setitem__("line", True), "cuda_ops[0].call_sites[0].line",
     "expected int, got bool"),
    (lambda g: g.__setitem__("symbol", 3), "symbol", "expected str, got int"),
    (lambda g: g.__setitem__("edges", [["a", "b", "c"]]), "edges[0]", "expected a list of 2, got 3"),
    (lambda g: g.__setitem__("renames", {"x": 1}), "renames.x", "expected str, got int"),
])
def test_wrong_typed_field_is_named(tmp_path, mutate, field, problem):
    g = _graph()
    mutate(g)
    p = tmp_path / "A1.graph.json"
    p.write_text(json.dumps(g))
    with pytest.raises(StageError) as e:
        contract.load_graph(p, "A2 collect-python")
    assert e.value.stage == "A2 collect-python" and e.value.input == str(p)
    assert e.value.problem == f"field {field}: {problem}"
    assert "A1.graph.json" in str(e.value)


def test_loader_returns_the_graph_as_read_and_checks_what_a_reader_needs(tmp_path):
    g = _graph()
    p = tmp_path / "A1.graph.json"
    p.write_text(json.dumps(g))
    assert contract.load_graph(p, "A5 bind") == g   # extra fields (edits, imports, ...) kept
    del g["files"]
    p.write_text(json.dumps(g))
    contract.load_graph(p, "A5 bind")
    with pytest.raises(StageError, match=r"field files: missing"):
        contract.load_graph(p, "A2 collect-python", need=("files",))
    with pytest.raises(StageError, match="run the A1 graph stage first"):
        contract.load_graph(tmp_path / "nope" / "A1.graph.json", "A4 cuda")


@pytest.mark.parametrize("stage_run", ["collect_python", "collect_cuda", "bind", "example", "package"])
def test_every_reader_uses_the_loader(tmp_path, stage_run):
    """Each stage refuses a wrong-typed graph through the loader, naming the field."""
    from bundler_lib import bind, collect_cuda, collect_python, example, package
    g = _graph()
    g["python_nodes"][0]["line"] = "1"
    d = tmp_path / "in"
    d.mkdir()
    (d / "A1.graph.json").write_text(json.dumps(g))
    for name in ("A0.license.json",):
        (d / name).write_text(json.dumps({"status": "ok"}))
    for name in ("A5.module.py", "A6.example.py"):
        (d / name).write_text("x = 1\n")
    calls = {
        "collect_python": lambda: collect_python.run(tree=tmp_path, graph=d / "A1.graph.json", out=tmp_path / "o"),
        "collect_cuda": lambda: collect_cuda.run(tree=tmp_path, graph=d / "A1.graph.json", out=tmp_path / "o"),
        "bind": lambda: bind.run(inputs=d, out=tmp_path / "o"),
        "example": lambda: example.run(d / "A1.graph.json", None, None, None, tmp_path / "o"),
        "package": lambda: package.run(d, tmp_path / "o", "X.py"),
    }
    with pytest.raises(StageError) as e:
        calls[stage_run]()
    assert e.value.problem == "field python_nodes[0].line: expected int, got str"
