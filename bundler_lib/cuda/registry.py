"""Find op registrations (`ops.def` / `ops.impl` inside TORCH_LIBRARY-style blocks) in csrc."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from bundler_lib.cuda import cpp

_BLOCK = re.compile(
    r"\b(STABLE_TORCH_LIBRARY_FRAGMENT|STABLE_TORCH_LIBRARY_IMPL|STABLE_TORCH_LIBRARY|"
    r"TORCH_LIBRARY_IMPL_EXPAND|TORCH_LIBRARY_EXPAND|TORCH_LIBRARY_FRAGMENT|TORCH_LIBRARY_IMPL|TORCH_LIBRARY)\s*\(")

# Dispatch keys that run the op on an NVIDIA GPU, best first.
IMPL_PRIORITY = ["CUDA", "CompositeExplicitAutograd", "CompositeImplicitAutograd", "catchall"]


@dataclass
class Def:
    namespace: str
    name: str          # op name without overload
    overload: str
    schema: str        # the full schema string as registered
    file: str
    line: int
    abi: str           # "stable" or "legacy"
    fn: str | None = None  # impl given in the def itself


@dataclass
class Impl:
    namespace: str
    name: str
    key: str           # dispatch key (CUDA, CPU, CompositeExplicitAutograd, catchall, ...)
    fn: str            # qualified C++ function name, e.g. rms_norm or vllm::foo
    file: str
    line: int
    abi: str
    fn_expr: str = ""  # the original argument text, e.g. TORCH_BOX(&rms_norm)


@dataclass
class Registry:
    defs: dict[tuple[str, str], list[Def]] = field(default_factory=dict)
    impls: dict[tuple[str, str], list[Impl]] = field(default_factory=dict)
    files_scanned: list[str] = field(default_factory=list)
    binding_files: list[str] = field(default_factory=list)
    namespaces: set[str] = field(default_factory=set)


def _resolve_ns(expr: str, ext_name: str | None) -> str | None:
    expr = expr.strip()
    m = re.fullmatch(r"CONCAT\s*\((.*)\)", expr, re.S)
    if m:
        parts = cpp.split_args(m.group(1))
        vals = [_resolve_ns(p, ext_name) for p in parts]
        return None if any(v is None for v in vals) else "".join(vals)
    if expr == "TORCH_EXTENSION_NAME":
        return ext_name
    if re.fullmatch(r"\w+", expr):
        return expr
    return None


def _fn_of(arg: str) -> str | None:
    m = re.search(r"&\s*((?:::)?[A-Za-z_][\w:]*(?:<[^()]*?>)?)", arg)
    if m:
        return m.group(1).lstrip(":") if m.group(1).startswith("::") else m.group(1)
    m = re.fullmatch(r"\s*((?:::)?[A-Za-z_][\w:]*)\s*", arg)
    if m and m.group(1) not in ("nullptr", "NULL"):
        return m.group(1)
    return None


def _key_of(arg: str) -> str | None:
    a = arg.strip()
    m = re.fullmatch(r"(?:torch::|c10::|at::)?(?:DispatchKey::|k)(\w+)", a)
    if m:
        return m.group(1)
    return None


def scan(tree: Path, ext_name_of: "callable[[str], str | None]", defines: dict) -> Registry:
    """Scan every .cpp/.cu/.cc file under tree/csrc for registration blocks.
    ext_name_of(relpath) gives the extension target's name (TORCH_EXTENSION_NAME) of a file, if known."""
    reg = Registry()
    csrc = tree / "csrc"
    files = sorted(p for p in csrc.rglob("*") if p.suffix in (".cpp", ".cu", ".cc") and p.is_file())
    for p in files:
        rel = p.relative_to(tree).as_posix()
        raw = p.read_text(encoding="utf-8", errors="replace")
        reg.files_scanned.append(rel)
        if "TORCH_LIBRARY" not in raw:
            continue
        text = cpp.active_text(raw, defines)  # comment-free, inactive branches blanked
        blanked = cpp.blank_strings(text)
        found = False
        for m in _BLOCK.finditer(blanked):
            macro = m.group(1)
            open_p = blanked.index("(", m.end() - 1)
            close_p = cpp.match_close(blanked, open_p)
            if close_p < 0:
                continue
            margs = cpp.split_args(text[open_p + 1:close_p])
            if not margs:
                continue  # the macro's own #define
            brace = re.match(r"\s*\{", blanked[close_p + 1:])
            if not brace:
                continue
            b_open = close_p + 1 + brace.end() - 1
            b_close = cpp.match_close(blanked, b_open)
            if b_close < 0:
                continue
            abi = "stable" if macro.startswith("STABLE") else "legacy"
            ns = _resolve_ns(margs[0], ext_name_of(rel))
            if ns is None:
                continue
            reg.namespaces.add(ns)
            found = True
            is_impl_block = "IMPL" in macro and "EXPAND" not in macro or macro == "TORCH_LIBRARY_IMPL_EXPAND"
            block_key = margs[1].strip() if is_impl_block and len(margs) >= 3 else None
            var = margs[-1].strip()
            body_b = blanked[b_open + 1:b_close]
            body_t = text[b_open + 1:b_close]
            for cm in re.finditer(r"\b" + re.escape(var) + r"\s*\.\s*(def|impl)\s*\(", body_b):
                o = cm.end() - 1
                c = cpp.match_close(body_b, o)
                if c < 0:
                    continue
                args = cpp.split_args(body_t[o + 1:c])
                line = text.count("\n", 0, b_open + 1 + cm.start()) + 1
                if not args:
                    continue
                first = cpp.string_literal_value(args[0])
                if first is None:
                    continue
                if cm.group(1) == "def":
                    schema = " ".join(first.split())
                    head = schema.split("(", 1)[0].strip()
                    name, _, overload = head.partition(".")
                    d = Def(ns, name, overload, schema, rel, line, abi)
                    if len(args) >= 2:
                        d.fn = _fn_of(args[1])
                    reg.defs.setdefault((ns, name), []).append(d)
                    if d.fn:
                        reg.impls.setdefault((ns, name), []).append(
                            Impl(ns, name, "catchall", d.fn, rel, line, abi, " ".join(args[1].split())))
                else:
                    name = first.split(".", 1)[0]
                    key = block_key
                    fn_args = args[1:]
                    if len(args) >= 3:
                        key = _key_of(args[1]) or key
                        fn_args = args[2:]
                    fn = _fn_of(fn_args[0]) if fn_args else None
                    if fn is None:
                        continue
                    reg.impls.setdefault((ns, name), []).append(
                        Impl(ns, name, key or "catchall", fn, rel, line, abi, " ".join(fn_args[0].split())))
        if found:
            reg.binding_files.append(rel)
    return reg


def best_impl(impls: list[Impl]) -> Impl | None:
    for key in IMPL_PRIORITY:
        for i in impls:
            if i.key == key:
                return i
    return None
