"""Branches held on parameter defaults (refs.Held): a branch of a module-level function that is dead while its
parameters keep their literal defaults. The scanner holds it; this rule follows it once some call in the
closure may pass another value, and prunes it when the closure is complete and none does."""

from __future__ import annotations

import ast

from .defs import caches
from .engine import Rule
from .guards import _UNKNOWN
from .scopes import literal_defaults


class HeldBranches(Rule):
    name = "held-branches"
    decides = ("a branch of a module-level function that its parameters' defaults decide is pruned when every "
               "call in the closure leaves those parameters at their defaults")

    def __init__(self):
        self._held: list = []   # (node, scan, Held): branches dead while parameters keep their defaults
        self._defaults: dict[tuple[str, int], dict[str, object]] = {}

    def absorb(self, g, n, scan) -> None:
        for h in scan.held:
            self._held.append((n, scan, h))

    def release(self, g) -> bool:
        """Follow the held branches whose parameters some call in the closure may set to other than their
        default. The closure only grows, so a branch released stays released; one still held when the closure
        is complete is dead (finish). Returns whether any was released."""
        if not self._held:
            return False
        sites = self._call_sites(g)
        keep, released = [], []
        for item in self._held:
            n, _, h = item
            if all(self._default_everywhere(g, n.key, p, sites, set()) for p in h.params):
                keep.append(item)
            else:
                released.append(item)
        self._held = keep
        for n, _, h in released:
            n.scans.append(h.scan)
            g.absorb(n, h.scan)
        return bool(released)

    def finish(self, g) -> None:
        """The closure is complete: prune the branches still held."""
        for _, scan, h in self._held:
            scan.edits.extend(h.edits)
            scan.guards.append(h.guard)
        self._held = []

    @staticmethod
    def _call_sites(g) -> dict[tuple[str, int], list | None]:
        """Module-level function node -> [(calling node, ast.Call)] for every reference to it in the closure,
        or None when one is not a plain call (a value, a decorator, an attribute, a splat of arguments),
        or when it is reached otherwise (a root, a registration, a synthetic statement)."""
        sites: dict[tuple[str, int], list | None] = {}
        for d in g.nodes.values():
            linked = set()
            for ref, key, _, used in d.links:
                linked.add(key)
                t = g.nodes.get(key)
                if t is None or t.kind != "function" or sites.get(key, []) is None:
                    continue
                if used == len(ref.attrs) and ref.call is not None and not ref.importtime:
                    sites.setdefault(key, []).append((d, ref.call))
                else:
                    sites[key] = None
            for _, _, key, _ in d.op_links:
                sites[key] = None
            for key in d.deps:
                if key not in linked:
                    sites[key] = None
        for key in g.entered | g.roots:
            sites[key] = None
        return sites

    def _literal_defaults(self, n) -> dict[str, object]:
        hit = self._defaults.get(n.key)
        if hit is None:
            fn = n.stmt
            ok = n.kind == "function" and isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and all(
                caches(d) for d in fn.decorator_list)
            hit = self._defaults[n.key] = literal_defaults(fn) if ok else {}
        return hit

    def _default_everywhere(self, g, key: tuple[str, int], p: str, sites: dict, assumed: set) -> bool:
        """Every call of function `key` in the closure leaves parameter `p` at its literal default: it omits
        it, passes that literal, or forwards a parameter of the calling function that is the same default
        everywhere in turn."""
        calls = sites.get(key)
        n = g.nodes[key]
        defaults = self._literal_defaults(n)
        if calls is None or p not in defaults:
            return False
        if (key, p) in assumed:
            return True   # a cycle of forwards: nothing in it sets another value
        assumed.add((key, p))
        want = defaults[p]
        a = n.stmt.args
        positional = [x.arg for x in a.posonlyargs + a.args]

        def same(x) -> bool:
            return type(x) is type(want) and x == want

        for caller, call in calls:
            if any(isinstance(x, ast.Starred) for x in call.args) or any(k.arg is None for k in call.keywords):
                return False
            given = [k.value for k in call.keywords if k.arg == p]
            if p in positional and positional.index(p) < len(call.args):
                given.append(call.args[positional.index(p)])
            for v in given:
                if isinstance(v, ast.Constant) and same(v.value):
                    continue
                if (isinstance(v, ast.Name) and same(self._literal_defaults(caller).get(v.id, _UNKNOWN))
                        and self._default_everywhere(g, caller.key, v.id, sites, assumed)):
                    continue
                return False
        return True
