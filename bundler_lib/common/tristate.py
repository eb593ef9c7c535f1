"""Three-valued logic for conditions evaluated on partial knowledge: a value is true, false, or None (unknown).
Kleene's and/or: a known false decides `and`, a known true decides `or`, else an unknown operand makes the
result unknown. Operands are tested for truth (a preprocessor's 0/1 work as well as False/True)."""

from __future__ import annotations


def and3(a, b) -> bool | None:
    if (a is not None and not a) or (b is not None and not b):
        return False
    if a is None or b is None:
        return None
    return True


def or3(a, b) -> bool | None:
    if a or b:
        return True
    if a is None or b is None:
        return None
    return False
