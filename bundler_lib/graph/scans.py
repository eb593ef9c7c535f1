"""Tree-wide text scans: what a rule learns from every file of the tree rather than from the files it parses
(e.g. which modules register a custom op of a given name). Each scan has a name; its results are recorded, so
that the memo (memo.py) can recompute just those scans to tell whether a stored graph still holds."""

from __future__ import annotations

from typing import Callable


class TreeScans:
    """Named scans: `kinds` maps a kind to `fn(arg) -> value` (a sorted list, or anything JSON compares);
    a scan's name is `kind` or `kind:arg`."""

    def __init__(self, kinds: dict[str, Callable[[str], object]]):
        self.kinds = kinds
        self.record: dict[str, object] = {}   # the results of the scans this graph used, by name (memo.py)

    def get(self, kind: str, arg: str | None = None):
        """The result of scan `kind` (of `arg`), computed once and recorded."""
        name = kind if arg is None else f"{kind}:{arg}"
        if name not in self.record:
            self.record[name] = self.kinds[kind]("" if arg is None else arg)
        return self.record[name]

    def recompute(self, name: str):
        """The scan named `name` computed afresh (the memo's check)."""
        kind, _, arg = name.partition(":")
        if kind not in self.kinds:
            raise ValueError(f"unknown scan {name!r}")
        return self.kinds[kind](arg)
