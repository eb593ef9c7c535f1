"""The bundle's text from its parts, and which part a line of it comes from."""

from __future__ import annotations


def compose(notice: str, module: str, example: str, script_block: str = "") -> str:
    """The bundle's text: notice, PEP 723 block, module, example, each separated by a blank line pair."""
    parts = [notice.rstrip("\n") + "\n"]
    if script_block:
        parts.append(script_block.rstrip("\n") + "\n")
    parts.append(module.strip("\n") + "\n")
    if example.strip():
        parts.append(example.strip("\n") + "\n")
    return "\n\n".join(parts)


def locate(source: str, module: str, example: str, lineno) -> tuple[str, int]:
    """Which input a line of the composed bundle comes from, and its line there."""
    if not lineno:
        return "the composed bundle", 0
    m_at = source.find(module.strip("\n"))
    m_line = source[:m_at].count("\n") + 1 if m_at >= 0 else 1
    e_at = source.rfind(example.strip("\n")) if example.strip() else -1
    e_line = source[:e_at].count("\n") + 1 if e_at >= 0 else None
    if e_line and lineno >= e_line:
        return "A6.example.py", lineno - e_line + 1
    if lineno >= m_line:
        return "A5.module.py", lineno - m_line + 1
    return "A0.license.json (headers_to_prepend)", lineno
