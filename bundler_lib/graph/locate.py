"""Find the target symbol's definition: a fast text search, confirmed by parsing."""

from __future__ import annotations

import difflib
import re

from bundler_lib.errors import StageError

from .index import TreeIndex

STAGE = "A1 graph"


def locate(index: TreeIndex, symbol: str, hint: str | None) -> tuple[str, str]:
    """Return (module, tree-relative path) of the top-level definition of `symbol`."""
    if not symbol.isidentifier():
        raise StageError(STAGE, f"symbol {symbol!r}", "not a Python identifier",
                         "pass the name of a class or function, e.g. RMSNorm")
    pat = re.compile(r"^(?:class|def|async\s+def)\s+" + re.escape(symbol) + r"\b|^" + re.escape(symbol)
                     + r"\s*(?::[^=]*)?=", re.M)
    candidates: list[tuple[str, str]] = []
    for module, rel in sorted(index.files.items(), key=lambda kv: kv[1]):
        if hint and not _hint_matches(rel, hint):
            continue
        text = index.text(rel)
        if text is None:
            continue
        if symbol not in text or not pat.search(text):
            continue
        info = index.get(module)  # confirm by parsing
        stmts = info.defs.get(symbol, [])
        if any(s.kind in ("class", "function") for s in stmts) or stmts:
            candidates.append((module, rel))
    if not candidates:
        if hint:
            raise StageError(STAGE, f"symbol {symbol!r} with symbol_file_hint {hint!r}",
                             "no top-level definition of the symbol in that file",
                             "check the hint (a tree-relative path such as "
                             "vllm/model_executor/layers/layernorm.py) or drop it")
        near = _near_names(index, symbol)
        raise StageError(STAGE, f"symbol {symbol!r}", "not defined at top level anywhere in the tree"
                         + (f"; near names: {', '.join(near)}" if near else ""),
                         "check the spelling (names are case-sensitive)")
    if len(candidates) > 1:
        # prefer class/function definitions over plain assignments
        strong = [c for c in candidates if any(s.kind in ("class", "function")
                                                for s in index.get(c[0]).defs.get(symbol, []))]
        if len(strong) == 1:
            return strong[0]
        listing = ", ".join(f"{rel}:{index.get(m).defs[symbol][0].line}" for m, rel in (strong or candidates))
        raise StageError(STAGE, f"symbol {symbol!r}", f"defined in several places: {listing}",
                         "pass symbol_file_hint with the path of the one you want")
    return candidates[0]


def _hint_matches(rel: str, hint: str) -> bool:
    hint = hint.strip().lstrip("./")
    if hint.startswith("tree/"):
        hint = hint[5:]
    return rel == hint or rel.endswith("/" + hint) or rel[:-3].replace("/", ".") == hint


_DEF_RE = re.compile(r"^(?:class|def|async\s+def)\s+([A-Za-z_][A-Za-z0-9_]*)", re.M)


def _near_names(index: TreeIndex, symbol: str) -> list[str]:
    names: set[str] = set()
    low = symbol.lower()
    for rel in index.files.values():
        text = index.text(rel)
        if text is None:
            continue
        for m in _DEF_RE.finditer(text):
            names.add(m.group(1))
    near = set(difflib.get_close_matches(symbol, sorted(names), n=8, cutoff=0.75))
    near |= {n for n in names if low in n.lower() and len(n) <= len(symbol) + 12}
    return sorted(near, key=lambda n: (-difflib.SequenceMatcher(None, symbol, n).ratio(), n))[:8]
