"""Blocks a node's edits leave empty get a `pass`: whatever removed their statements (decided branches, dropped
members, repo-local imports, dead code after a decided return), the edited text stays valid Python."""

from __future__ import annotations

import ast


def _start(st: ast.stmt) -> int:
    return min([st.lineno] + [d.lineno for d in getattr(st, "decorator_list", [])])


def _keyword_line(lines: list[str], lo: int, hi: int, kw: str) -> int | None:
    """The line in lo..hi (searched upwards from hi) that starts with `kw` followed by `:` (else/finally)."""
    for ln in range(hi, lo - 1, -1):
        t = lines[ln - 1].strip() if 0 < ln <= len(lines) else ""
        if t.startswith(kw) and t[len(kw):].lstrip().startswith(":"):
            return ln
    return None


def _blocks(st: ast.stmt, lines: list[str]):
    """(header line, statement list) of each block directly inside `st`; the header line is the one whose
    removal removes the block's keyword with it (`if`/`def` line, `else:`, `except ...:`, `finally:`)."""
    out = []
    body = getattr(st, "body", None)
    if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
        out.append((st.lineno, body))
    orelse = getattr(st, "orelse", None)
    if orelse:
        written_elif = (isinstance(st, ast.If) and len(orelse) == 1 and isinstance(orelse[0], ast.If)
                        and lines[orelse[0].lineno - 1].encode()[orelse[0].col_offset:].startswith(b"elif"))
        if written_elif:   # an `elif` is a statement of its own (its own header), not an `else:` block
            out.append((None, orelse))
        else:
            prev = (st.handlers[-1].body[-1] if getattr(st, "handlers", None) else st.body[-1])
            out.append((_keyword_line(lines, prev.end_lineno, orelse[0].lineno, "else"), orelse))
    for h in getattr(st, "handlers", []) or []:
        out.append((h.lineno, h.body))
    final = getattr(st, "finalbody", None)
    if final:
        prev_blocks = [b for _, b in out if b]
        prev = prev_blocks[-1][-1] if prev_blocks else st.body[-1]
        out.append((_keyword_line(lines, prev.end_lineno, final[0].lineno, "finally"), final))
    for c in getattr(st, "cases", []) or []:   # match
        out.append((c.pattern.lineno, c.body))
    return out


def emptied_block_edits(stmt: ast.stmt | None, lines: list[str], edits: list[dict]) -> list[dict]:
    """`pass` edits (indented like the removed statements) for each block of `stmt` whose statements the
    `delete` edits remove all of, while its header stays."""
    if stmt is None:
        return []
    deleted: set[int] = set()
    for e in edits:
        if e["op"] == "delete":
            deleted.update(range(e["line"], e["end_line"] + 1))
    if not deleted:
        return []
    passes = {e["line"] for e in edits if e["op"] == "pass"}

    def gone(st: ast.stmt) -> bool:
        a, b = _start(st), st.end_lineno
        return all(i in deleted for i in range(a, b + 1)) and not any(a <= p <= b for p in passes)

    out: list[dict] = []

    def visit(st: ast.stmt):
        if gone(st):
            return
        for header, block in _blocks(st, lines):
            # header None or deleted: the block's keyword goes (an `elif`; a branch dedented in place of its
            # statement): what is left of it belongs to the enclosing block
            if header is not None and header not in deleted and all(gone(x) for x in block):
                first = block[0]
                out.append({"op": "pass", "line": _start(first), "end_line": _start(first),
                            "indent": first.col_offset})
            else:
                for x in block:
                    visit(x)

    visit(stmt)
    return out
