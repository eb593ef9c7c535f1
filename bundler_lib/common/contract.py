"""The typed contract of `A1.graph.json`: the fields later stages (A2..A7, and the Pants rules) consume, as frozen
dataclasses, and ONE loader that validates a graph against them.

`load_graph(path, stage, need)` / `parse_graph(data, stage, where, need)` check every field present against its
type here (nested records in full: a `python_nodes` entry must have all of its fields) and that the fields `need`
names are present; the first problem is a StageError naming the artifact and the field's path
(`A1.graph.json: field python_nodes[3].line: expected int, got str`). They return the graph as read (the dict:
fields beyond the contract, e.g. `python_nodes[*].edits`, stay where A1 put them); `typed(graph)` gives the
dataclasses. A1 writes the JSON; nothing here changes its bytes.

docs/stage-contract.md's "A1.graph.json" section lists the same fields (tests/test_contract.py keeps them equal).
Python 3.9 compatible: the Pants rules import it.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from bundler_lib.errors import StageError

ARTIFACT = "A1.graph.json"
REMEDY = "re-run A1 (graph); see docs/stage-contract.md"


@dataclass(frozen=True)
class PythonNode:
    id: str            # <file>::<name>
    name: str
    emit_name: str     # the (possibly renamed) name in the bundle
    file: str
    line: int
    end_line: int
    kind: str
    section: str       # python or triton


@dataclass(frozen=True)
class TritonKernel:
    name: str
    emit_name: str
    file: str
    line: int
    end_line: int
    kind: str          # kernel, helper or constexpr


@dataclass(frozen=True)
class CallSite:
    file: str
    line: int


@dataclass(frozen=True)
class CudaOp:
    op: str            # <namespace>.<name>, e.g. _C.rms_norm
    namespace: str
    name: str
    call_sites: Tuple[CallSite, ...]
    required: bool = True   # false: A4 may emit a stub wrapper when the op cannot be embedded


@dataclass(frozen=True)
class PythonCustomOp:
    op: str            # torch.ops.vllm.<op>
    target: str        # the emit_name of the inlined Python function


@dataclass(frozen=True)
class Guard:
    file: str
    line: int
    end_line: int
    predicate: str
    value: Any
    kept: str
    assumes: Optional[str] = None   # a branch held on parameter defaults: the calls it relies on; a choice
                                    # decided against: the package it needs that the bundle lacks


@dataclass(frozen=True)
class Graph:
    """Every field has a default so that a reader states what it needs (`need`); what is present is checked."""
    status: Optional[str] = None
    symbol: Optional[str] = None
    kind: Optional[str] = None          # class or function
    def_file: Optional[str] = None
    def_line: Optional[int] = None
    root_signature: Optional[Dict[str, Any]] = None   # class: its own __init__/forward parameters (A6 classifies)
    variant: Dict[str, Any] = field(default_factory=dict)   # resolved, all keys
    files: Tuple[str, ...] = ()         # sorted tree-relative paths of the Python files A2 reads
    python_nodes: Tuple[PythonNode, ...] = ()   # in emission (topological) order
    triton_kernels: Tuple[TritonKernel, ...] = ()
    cuda_ops: Tuple[CudaOp, ...] = ()
    python_custom_ops: Tuple[PythonCustomOp, ...] = ()
    imports_external: Tuple[str, ...] = ()
    imports_runtime_only: Tuple[str, ...] = ()
    imports_annotation_only: Tuple[str, ...] = ()
    edges: Tuple[Tuple[str, str], ...] = ()     # [from_id, to_id]
    guards: Tuple[Guard, ...] = ()
    renames: Dict[str, str] = field(default_factory=dict)   # {id: emit_name} for renamed nodes
    notes: Tuple[str, ...] = ()


def fields_of(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


class _Bad(Exception):
    def __init__(self, path: str, problem: str):
        self.path, self.problem = path, problem


def _tname(t) -> str:
    return getattr(t, "__name__", None) or str(t).replace("typing.", "")


def _convert(value, t, path: str):
    """`value` (parsed JSON) as type `t`, or _Bad naming the field path."""
    if t is Any:
        return value
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is Union:   # Optional[X]
        if value is None:
            return None
        return _convert(value, [a for a in args if a is not type(None)][0], path)
    if dataclasses.is_dataclass(t):
        return _record(value, t, path)
    if origin is tuple:
        if not isinstance(value, list):
            raise _Bad(path, f"expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _Bad(path, f"expected a list of {len(args)}, got {len(value)}")
        return tuple(_convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise _Bad(path, f"expected an object, got {type(value).__name__}")
        return {k: _convert(v, args[1], f"{path}.{k}") for k, v in value.items()}
    ok = isinstance(value, t) and not (t is int and isinstance(value, bool))
    if not ok:
        raise _Bad(path, f"expected {_tname(t)}, got {type(value).__name__}")
    return value


def _record(value, cls, path: str, need: tuple[str, ...] | None = None):
    if not isinstance(value, dict):
        raise _Bad(path, f"expected an object, got {type(value).__name__}")
    hints = typing.get_type_hints(cls)
    kw = {}
    for f in dataclasses.fields(cls):
        sub = f"{path}.{f.name}" if path else f.name
        if f.name not in value:
            required = f.name in need if need is not None else (
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
            if required:
                raise _Bad(sub, "missing")
            continue
        kw[f.name] = _convert(value[f.name], hints[f.name], sub)
    return cls(**kw)


def typed(graph: dict, where: str = ARTIFACT, stage: str = "A1 graph", need: tuple[str, ...] = ()) -> Graph:
    """The graph as the dataclasses above; a StageError naming `where` and the field path on the first problem."""
    try:
        return _record(graph, Graph, "", tuple(need))
    except _Bad as e:
        raise StageError(stage, where, f"field {e.path}: {e.problem}", REMEDY) from None


def parse_graph(data: bytes | str | dict, stage: str, where: str = ARTIFACT, need: tuple[str, ...] = ()) -> dict:
    """The graph (JSON text or the parsed dict), validated against the contract; returned as read."""
    if not isinstance(data, dict):
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise StageError(stage, where, f"not valid JSON ({e})", REMEDY) from None
    typed(data, where, stage, need)
    return data


def load_graph(path: str | Path, stage: str, need: tuple[str, ...] = ()) -> dict:
    """THE loader of A1.graph.json: read `path`, validate it (`need`: fields this reader cannot do without)."""
    path = Path(path)
    where = f"{ARTIFACT} ({path})" if path.name != ARTIFACT else str(path)
    try:
        text = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise StageError(stage, where, "file not found", "run the A1 graph stage first") from None
    return parse_graph(text, stage, where, need)
