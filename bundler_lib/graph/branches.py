"""Edits that prune a decided `if` (or `elif`) while keeping the file's shape: the live branch dedented in
place of the statement where it can be, else the test replaced by its value (refs.py gives the decisions)."""

from __future__ import annotations

import ast


def span(e: ast.AST, text: str) -> dict:
    """The edit replacing expression `e` by `text`."""
    return {"op": "span", "line": e.lineno, "col": e.col_offset, "end_line": e.end_lineno,
            "end_col": e.end_col_offset, "text": text}


def remove_stmt(st: ast.stmt, sole: bool) -> dict:
    """The edit removing statement `st` (`pass` in its place when it is its block's only statement)."""
    if sole:
        return {"op": "pass", "line": st.lineno, "end_line": st.end_lineno, "indent": st.col_offset}
    return {"op": "delete", "line": st.lineno, "end_line": st.end_lineno}


class IfPruner:
    """Prunes the decided ifs of one scan (of one module's lines)."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        self.promoted: set[int] = set()   # `elif` nodes whose parent's pruning turned them into `if`

    def dedent_ok(self, a: int, b: int, cols: int) -> bool:
        for ln in self.lines[a - 1:b]:
            if ln.strip() and not ln.startswith(" " * cols):
                return False
        return True

    def is_elif(self, st: ast.If) -> bool:
        if len(st.orelse) != 1 or not isinstance(st.orelse[0], ast.If):
            return False
        o = st.orelse[0]
        return self.lines[o.lineno - 1].encode()[o.col_offset:].startswith(b"elif")

    def else_line(self, st: ast.If) -> int | None:
        first = st.orelse[0]
        start = first.lineno
        for ln in range(start, st.body[-1].end_lineno, -1):
            text = self.lines[ln - 1].strip()
            if text.startswith("else") and text[4:].lstrip().startswith(":"):
                return ln
        return None

    def prune_elif(self, st: ast.If, value: bool, E: list):
        """`elif test:` decided: the chain keeps its shape (the header before it is the parent's)."""
        if value:
            E.append(span(st.test, "True"))
            if st.orelse:
                E.append({"op": "delete", "line": st.body[-1].end_lineno + 1, "end_line": st.end_lineno})
            return
        if not st.orelse:
            E.append({"op": "delete", "line": st.lineno, "end_line": st.end_lineno})
        elif self.is_elif(st):
            E.append({"op": "delete", "line": st.lineno, "end_line": st.orelse[0].lineno - 1})
        else:
            else_line = self.else_line(st)
            if else_line is None:   # `else:` on the body's last line: keep the text, decided
                E.append(span(st.test, "False"))
            else:
                E.append({"op": "delete", "line": st.lineno, "end_line": else_line - 1})

    def written_elif(self, st: ast.If) -> bool:
        return self.lines[st.lineno - 1].encode()[st.col_offset:].startswith(b"elif")

    def prune_if(self, st: ast.If, value: bool, sole: bool, E: list):
        if self.written_elif(st) and id(st) not in self.promoted:
            self.prune_elif(st, value, E)
            return
        if value:
            body = st.body
            cols = body[0].col_offset - st.col_offset
            multi = body[0].lineno > st.test.end_lineno
            if multi and self.dedent_ok(body[0].lineno, body[-1].end_lineno, cols):
                E.append({"op": "delete", "line": st.lineno, "end_line": body[0].lineno - 1})
                E.append({"op": "dedent", "line": body[0].lineno, "end_line": body[-1].end_lineno, "cols": cols})
            else:
                E.append(span(st.test, "True"))
            if st.orelse:
                E.append({"op": "delete", "line": body[-1].end_lineno + 1, "end_line": st.end_lineno})
            return
        if not st.orelse:
            E.append(remove_stmt(st, sole))
            return
        if self.is_elif(st):
            o = st.orelse[0]
            E.append({"op": "delete", "line": st.lineno, "end_line": o.lineno - 1})
            E.append({"op": "span", "line": o.lineno, "col": o.col_offset, "end_line": o.lineno,
                      "end_col": o.col_offset + 4, "text": "if"})
            self.promoted.add(id(o))   # now written `if`: pruned as one
            return
        else_line = self.else_line(st)
        first, last = st.orelse[0], st.orelse[-1]
        cols = first.col_offset - st.col_offset
        if else_line is not None and first.lineno > else_line and self.dedent_ok(first.lineno, last.end_lineno, cols):
            E.append({"op": "delete", "line": st.lineno, "end_line": first.lineno - 1})
            E.append({"op": "dedent", "line": first.lineno, "end_line": last.end_lineno, "cols": cols})
        else:
            E.append(span(st.test, "False"))
            E.append({"op": "pass", "line": st.body[0].lineno, "end_line": st.body[-1].end_lineno,
                      "indent": st.body[0].col_offset})

    # ------------------------------------------------------------ expressions
