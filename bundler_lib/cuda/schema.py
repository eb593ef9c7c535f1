"""Parse a TorchScript op schema just enough to write a Python wrapper with the same signature."""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass

from bundler_lib.cuda.cpp import split_args


@dataclass
class Arg:
    type: str
    name: str
    default: str | None   # schema text of the default, or None
    kwarg_only: bool

    @property
    def py_name(self) -> str:
        return self.name + "_" if keyword.iskeyword(self.name) or self.name in ("torch",) else self.name


@dataclass
class Schema:
    name: str
    overload: str
    args: list[Arg]
    returns: str


def parse(schema: str) -> Schema:
    schema = " ".join(schema.split())
    m = re.match(r"^([\w.]+)\s*\((.*)\)\s*->\s*(.*)$", schema)
    if not m:
        raise ValueError(f"not an op schema: {schema!r}")
    head, argtext, ret = m.groups()
    name, _, overload = head.partition(".")
    args = []
    kw = False
    for a in split_args(argtext):
        a = a.strip()
        if not a:
            continue
        if a == "*":
            kw = True
            continue
        default = None
        if "=" in a:
            a, default = a.split("=", 1)
            a, default = a.strip(), default.strip()
        tm = re.match(r"^(.*\S)\s+(\w+)$", a)
        if not tm:
            raise ValueError(f"cannot read argument {a!r} of schema {schema!r}")
        args.append(Arg(tm.group(1), tm.group(2), default, kw))
    return Schema(name, overload, args, ret.strip())


def py_default(arg: Arg) -> str:
    d = arg.default
    if d is None:
        raise ValueError("no default")
    if d in ("None", "True", "False"):
        return d
    if re.fullmatch(r"-?(\d+\.?\d*(e-?\d+)?|\.\d+|inf|nan)", d):
        return {"inf": "float('inf')", "-inf": "float('-inf')", "nan": "float('nan')"}.get(d, d)
    if re.fullmatch(r"\[.*\]", d):
        inner = d[1:-1].strip()
        return "(" + (inner + ("," if inner and "," not in inner else "")) + ")" if inner else "()"
    if re.fullmatch(r'"[^"]*"|\'[^\']*\'', d):
        return repr(d[1:-1])
    # int[2] stride=1 style broadcast, or enum names (Mean, contiguous_format): keep as a string.
    if re.fullmatch(r"-?\d+", d):
        return d
    return repr(d)


def py_annotation(t: str) -> str:
    base = re.sub(r"\([^)]*\)", "", t).replace("!", "")
    optional = base.endswith("?")
    base = base.rstrip("?")
    if base.startswith("Tensor[]") or base == "Tensor[]":
        ann = "list[torch.Tensor]"
    elif base.startswith("Tensor"):
        ann = "torch.Tensor"
    elif base in ("int", "SymInt"):
        ann = "int"
    elif base == "float":
        ann = "float"
    elif base == "bool":
        ann = "bool"
    elif base == "str":
        ann = "str"
    elif base.endswith("]") and base.split("[")[0] in ("int", "SymInt"):
        ann = "list[int]"
    elif base.endswith("]") and base.split("[")[0] == "float":
        ann = "list[float]"
    elif base == "ScalarType":
        ann = "torch.dtype"
    else:
        return ""
    return f"{ann} | None" if optional else ann
