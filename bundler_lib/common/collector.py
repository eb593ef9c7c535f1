"""A stage that builds one large structure and keeps it to its end (a bundle's trees, libcst's nodes, pyflakes'
scopes) runs without Python's cyclic collector: its full passes walk every live object again and again, and such
a stage leaves little cyclic garbage to free (same peak memory without them)."""

from __future__ import annotations

import functools
import gc


def without_cycle_collection(f):
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        collecting = gc.isenabled()
        gc.disable()
        try:
            return f(*args, **kwargs)
        finally:
            if collecting:
                gc.enable()
    return wrapper
