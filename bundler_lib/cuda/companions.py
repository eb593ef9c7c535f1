"""A4: the companion sources of an op's implementing source: the other sources of its build target that vLLM's
CMake links into the same library because they define what it only declares (the link closure, found in the text)."""

from __future__ import annotations

import posixpath
import re

from bundler_lib.cuda import cpp

SOURCE_EXTS = (".cu", ".cpp", ".cc")


def resolve_include(tree, includer: str, inc: cpp.Include, include_dirs: list[str]) -> str | None:
    cands = []
    if not inc.angled:
        cands.append(posixpath.normpath(posixpath.join(posixpath.dirname(includer), inc.path)))
    cands += [posixpath.normpath(posixpath.join(d, inc.path)) for d in include_dirs]
    for c in cands:
        if not c.startswith("../") and tree.exists(c):
            return c
    return None


def find_definition(tree, files: list[str], fn: str) -> list[tuple[str, int]]:
    hits = []
    pat = re.compile(r"\b" + re.escape(fn) + r"\s*\(")
    for f in files:
        t = tree.text(f)
        if fn not in t or not pat.search(t):   # the plain text test first: most files do not name it at all
            continue
        for line in cpp.find_function_definitions(t, fn):
            hits.append((f, line))
    return hits


def companion_sources(tree, src: str, sources: list[str], include_dirs: list[str]) -> list[str]:
    """The other sources of the op's build target that define what `src` only declares, found transitively: vLLM's
    CMake links them into the same library. Three kinds:
    - a function `src` declares without a body (fp32_router_gemm_entry.cu calls invokeFp32RouterGemm, which
      fp32_router_gemm.cu defines and instantiates);
    - a function a header of the tree that `src` includes declares, which `src` calls and which neither it nor its
      headers define (topk.cu calls top_k_per_row_decode, which ops.h declares and sampler.cu defines);
    - the units that only instantiate the templates a header `src` includes declares `extern template`
      (topk_softplus_sqrt_kernels.cuh; topk_softplus_sqrt_<dtype>_<index>.cu instantiate them).
    Where several sources define a name, the one closest to `src` is taken."""
    out: list[str] = []
    others = [s for s in sources if s != src]

    def add(hit: str) -> None:
        if hit not in out:
            out.append(hit)
            todo.append(hit)

    todo = [src]
    while todo:
        f = todo.pop(0)
        text = tree.text(f)
        headers = _own_headers(tree, f, include_dirs)
        for name in _declared_elsewhere(tree, text, headers):
            hits = sorted({h for h, _ in find_definition(tree, others, name)},
                          key=lambda h: (distance(h, src), h))
            if hits:
                add(hits[0])
        for h in headers:
            if _EXTERN_TEMPLATE.search(cpp.blank_strings(cpp.strip_comments(tree.text(h)))):
                for unit in others:
                    if h in _own_headers(tree, unit, include_dirs) and _instantiates_only(tree.text(unit)):
                        add(unit)
    return out


# `extern template ...`, or `extern` given to a macro that writes `EXT template ...`
_EXTERN_TEMPLATE = re.compile(r"\bextern\s+template\b|\(\s*extern\s*,")


def _own_headers(tree, f: str, include_dirs: list[str]) -> list[str]:
    """The headers of the tree `f` includes itself (any preprocessor branch)."""
    found = (resolve_include(tree, f, inc, include_dirs) for inc in cpp.includes(tree.text(f), {}))
    return [h for h in found if h is not None and not h.endswith(SOURCE_EXTS)]


def _declared_elsewhere(tree, text: str, headers: list[str]) -> list[str]:
    """Functions `text` needs from another unit: those it declares without defining (or specialising), and those
    its headers declare that it calls and that neither it nor those headers define."""
    def defined(name: str, t: str) -> bool:
        return bool(cpp.find_function_definitions(t, name) or re.search(
            r"template\s*<\s*>[^;{]*\b" + re.escape(name) + r"\s*<", t))

    own = [n for n in cpp.find_function_declarations(text) if not defined(n, text)]
    code = cpp.blank_strings(cpp.strip_comments(text))
    called = []
    for h in headers:
        for name in cpp.find_function_declarations(tree.text(h)):
            if (name not in own and name not in called and cpp.calls(code, name)
                    and not defined(name, text) and not any(defined(name, tree.text(x)) for x in headers)):
                called.append(name)
    return own + called


def _instantiates_only(text: str) -> bool:
    """A unit whose code, outside its includes and namespaces, has no body: only explicit instantiations (or the
    macros that write them)."""
    t = cpp.blank_strings(cpp.strip_comments(text))
    t = re.sub(r"(?m)^\s*#.*(?:\\\n.*)*$", "", t)
    t = re.sub(r"\bnamespace\s*[\w:]*\s*\{|\}", "", t)
    return bool(t.strip()) and "{" not in t


def distance(a: str, b: str) -> int:
    pa, pb = a.split("/")[:-1], b.split("/")[:-1]
    common = 0
    for x, y in zip(pa, pb):
        if x != y:
            break
        common += 1
    return len(pa) + len(pb) - 2 * common
