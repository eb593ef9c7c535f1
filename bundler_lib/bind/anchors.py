"""Module-directory anchors (A3.data.json) rewritten to the data section's helper."""

from __future__ import annotations

import ast
import re

from bundler_lib.bind.rewrite import top_level_blocks
from bundler_lib.common.data_anchors import anchor_kind, helper_call


PROVENANCE = re.compile(r"^# --- Inlined from (\S+?):L\d+")


DATA_SENTINEL = "# @@ A5: the data section goes here @@\n"


def _anchor_spans(chunk: str) -> list[tuple[int, int, int, int, str, str]]:
    """(line, col, end_line, end_col, kind, source) of the module-directory anchors in `chunk`, outermost only;
    lines 1-based, columns UTF-8 byte offsets (as in ast)."""
    found = []
    for node in ast.walk(ast.parse(chunk)):
        kind = anchor_kind(node)
        if kind:
            found.append((node.lineno, node.col_offset, node.end_lineno, node.end_col_offset, kind,
                          ast.unparse(node)))
    found.sort()
    out = []
    for f in found:
        if out and (f[0], f[1]) < (out[-1][2], out[-1][3]):
            continue  # inside the previous one
        out.append(f)
    return out


def rewrite_anchors(module_text: str, dirs: dict[str, str]) -> tuple[str, dict, dict, list]:
    """Rewrite the module-directory anchors of blocks inlined from a file of `dirs` ({file: module dir}) to
    the data helper. Returns (text, {(from, to): count}, {file: count}, [(line, file, source) left as is])."""
    lines = module_text.splitlines(keepends=True)
    owner, cur = [], None
    for ln in lines:
        m = PROVENANCE.match(ln)
        if m:
            cur = m.group(1)
        owner.append(cur)
    out, counts, per_file, left, pos = [], {}, {}, [], 0
    for start, end in top_level_blocks(module_text):
        out.append("".join(lines[pos:start]))
        chunk = "".join(lines[start:end])
        pos = end
        if "__file__" in chunk:
            spans = _anchor_spans(chunk)
            f = owner[start]
            if f not in dirs:
                left += [(start + a[0], f, a[5]) for a in spans]
            elif spans:
                buf = [ln.encode("utf-8") for ln in chunk.splitlines(keepends=True)]
                for a, col, b, end_col, kind, src in reversed(spans):
                    new = helper_call(kind, dirs[f])
                    buf[a - 1] = buf[a - 1][:col] + new.encode("utf-8") + buf[b - 1][end_col:]
                    for i in range(a, b):
                        buf[i] = b""
                    counts[(src, new)] = counts.get((src, new), 0) + 1
                    per_file[f] = per_file.get(f, 0) + 1
                chunk = b"".join(buf).decode("utf-8")
        out.append(chunk)
    out.append("".join(lines[pos:]))
    return "".join(out), counts, per_file, left
