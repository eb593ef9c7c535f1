"""Apply A1's edits to a verbatim slice of a source file (shared by A2 and A3; A1 writes the edits)."""

from __future__ import annotations


def apply_edits(lines: list[str], start: int, end: int, edits: list[dict]) -> str:
    """`lines`: the file's lines (keepends); returns the text of lines start..end (1-based, inclusive)
    with the edits applied. Columns are UTF-8 byte offsets (as in Python's ast)."""
    buf: dict[int, bytes | None] = {i: lines[i - 1].encode("utf-8") for i in range(start, end + 1)}
    removed: set[int] = set()
    for e in edits:
        if e["op"] in ("delete", "pass"):
            removed.update(range(e["line"], e["end_line"] + 1))
    spans = sorted((e for e in edits if e["op"] == "span"), key=lambda e: (e["line"], e["col"]), reverse=True)
    for e in spans:
        a, b = e["line"], e["end_line"]
        if a < start or b > end or any(i in removed for i in range(a, b + 1)):
            continue
        if buf.get(a) is None or buf.get(b) is None:
            continue
        text = e["text"].encode("utf-8")
        buf[a] = buf[a][: e["col"]] + text + buf[b][e["end_col"]:]
        for i in range(a + 1, b + 1):
            buf[i] = None
    for e in edits:
        if e["op"] == "delete":
            for i in range(e["line"], e["end_line"] + 1):
                if i in buf:
                    buf[i] = None
    for e in sorted((e for e in edits if e["op"] == "delete"), key=lambda e: e["line"]):
        # the blank lines that separated a deleted statement from the next one go with it, when a blank
        # line already precedes it (no runs of empty lines where methods were dropped)
        before = next((buf[i] for i in range(e["line"] - 1, start - 1, -1) if buf.get(i) is not None), None)
        if before is None or before.strip():
            continue
        i = e["end_line"] + 1
        while i <= end and (buf.get(i) is None or not buf[i].strip()):
            buf[i] = None
            i += 1
    for e in edits:
        if e["op"] == "pass":
            a = e["line"]
            if a in buf:
                buf[a] = b" " * e["indent"] + b"pass\n"
            for i in range(a + 1, e["end_line"] + 1):
                if i in buf:
                    buf[i] = None
    for e in edits:
        if e["op"] == "dedent":
            pad = b" " * e["cols"]
            for i in range(e["line"], e["end_line"] + 1):
                v = buf.get(i)
                if v is not None and v.startswith(pad):
                    buf[i] = v[e["cols"]:]
    out = b"".join(v for i, v in sorted(buf.items()) if v is not None)
    text = out.decode("utf-8")
    if not text.endswith("\n"):
        text += "\n"
    return text


def license_of(header: list[str], default: str = "Apache-2.0") -> str:
    for h in header:
        if "SPDX-License-Identifier:" in h:
            return h.split("SPDX-License-Identifier:", 1)[1].strip() or default
    return default


def file_header(lines: list[str]) -> list[str]:
    """The file's own copyright / SPDX comment lines at its top."""
    out = []
    for ln in lines[:40]:
        s = ln.strip()
        if not s:
            continue
        if not s.startswith("#"):
            break
        if s.startswith("#!") or "coding" in s[:20]:
            continue
        if "SPDX" in s or "opyright" in s:
            out.append(ln.rstrip("\n"))
    return out
