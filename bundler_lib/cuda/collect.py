"""A4: locate each compiled op's registration, its C++ implementation and the exact in-tree include
closure; emit the CUDA section of the bundle (embedded sources, lazy build, wrappers)."""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

from bundler_lib.cuda import cmake, cpp, registry
from bundler_lib.cuda import emit
from bundler_lib.cuda.companions import SOURCE_EXTS, companion_sources, distance, find_definition, resolve_include
from bundler_lib.errors import StageError

STAGE = "A4 cuda"

# Headers of third-party projects vLLM fetches at build time (not in the tree, not in torch/CUDA):
# a bundle cannot embed them.
THIRD_PARTY_PREFIXES = ("cutlass/", "cute/", "cutlass_extensions/", "flash_attn", "flashinfer", "flash/",
                        "deep_gemm", "deepgemm", "triton_kernels", "qutlass", "flashmla", "kernels/flashmla",
                        "vllm_flash_attn", "fmha", "cudnn", "nvshmem", "composable_kernel", "ck/", "ck_tile",
                        "aiter")


@dataclass
class OpPlan:
    op: str
    namespace: str
    name: str
    schema: str
    abi: str
    def_file: str
    def_line: int
    impl_file: str
    impl_line: int
    impl_key: str
    fn: str
    fn_expr: str
    source_file: str
    source_line: int
    decl_headers: list[str] = field(default_factory=list)
    companions: list[str] = field(default_factory=list)  # sources defining what source_file only declares
    kernels: list[str] = field(default_factory=list)
    call_sites: list = field(default_factory=list)
    reg_name: str = ""  # name registered in the bundle's namespace (the original name unless it collides)
    tu: str = ""        # id of the translation unit that compiles and registers it


@dataclass
class TranslationUnit:
    """One implementing source file with the registration of its ops, built into its own library (vLLM's CMake
    compiles every source separately; several together clash: WARP_SIZE, vllm::moe::ScoringFunc, ...). Its
    companion sources are linked into the same library, each compiled on its own as vLLM's CMake compiles it
    (dsv3_router_gemm's _float_out.cu and _bf16_out.cu both define a device fma() helper)."""
    id: str
    source_file: str
    plans: list[OpPlan] = field(default_factory=list)
    companions: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # its include closure, in discovery order
    lines: int = 0
    sources: list[tuple[str, str]] = field(default_factory=list)  # (file name, text): the files compiled, in order
    key: str = ""        # sha256 over its files, its compiled files and the flags: what a shared build is named by
    namespace: str = ""  # vllm_bundle_<key[:16]>: where its ops register


def _tu_id(source: str, used: set[str]) -> str:
    """A short identifier from the file name: `layernorm_kernels` (.cu), `ops_h` (another extension)."""
    base, _, ext = posixpath.basename(source).rpartition(".")
    stem = re.sub(r"\W", "_", base or ext) + ("" if ext == "cu" or not base else "_" + re.sub(r"\W", "_", ext))
    stem = stem if stem and not stem[0].isdigit() else "tu_" + stem
    name, i = stem, 2
    while name in used:
        name, i = f"{stem}_{i}", i + 1
    return name


def plan_translation_units(plans: list[OpPlan], closure: dict[str, list[str]]) -> list[TranslationUnit]:
    """Group the ops by implementing source file, in the order of first appearance."""
    tus: list[TranslationUnit] = []
    by_src: dict[str, TranslationUnit] = {}
    used: set[str] = set()
    for p in plans:
        tu = by_src.get(p.source_file)
        if tu is None:
            tu = TranslationUnit(_tu_id(p.source_file, used), p.source_file)
            used.add(tu.id)
            by_src[p.source_file] = tu
            tus.append(tu)
        tu.plans.append(p)
        p.tu = tu.id
        tu.companions += [c for c in p.companions if c not in tu.companions]
        tu.files += [f for f in closure[p.op] if f not in tu.files]
    return tus


class Tree:
    """Read-only access to tree/csrc with caching."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._text: dict[str, str] = {}

    def exists(self, rel: str) -> bool:
        return (self.root / rel).is_file()

    def text(self, rel: str) -> str:
        if rel not in self._text:
            self._text[rel] = (self.root / rel).read_text(encoding="utf-8", errors="replace")
        return self._text[rel]

    def raw(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()


def _defines(info: cmake.BuildInfo, target: cmake.Target | None) -> dict[str, str | None]:
    d: dict[str, str | None] = {}
    items = list(target.definitions if target else []) + list(info.torch_flag_additions) + list(info.gpu_flags)
    for item in items:
        item = item[2:] if item.startswith("-D") else item
        if not item or item.startswith("-"):
            continue
        k, _, v = item.partition("=")
        d[k] = v or None
    return d


def include_closure(tree: Tree, roots: list[str], include_dirs: list[str], defines: dict) -> tuple[list[str], list[str]]:
    """(files in discovery order, including roots; external angle includes seen). StageError on a
    quoted include that is not in the tree or an include of a third-party project."""
    seen: list[str] = []
    external: set[str] = set()
    stack = list(roots)
    while stack:
        f = stack.pop(0)
        if f in seen:
            continue
        seen.append(f)
        for inc in cpp.includes(tree.text(f), defines):
            r = resolve_include(tree, f, inc, include_dirs)
            if r is not None:
                if r not in seen:
                    stack.append(r)
                continue
            low = inc.path.lower()
            if any(low.startswith(p) for p in THIRD_PARTY_PREFIXES):
                raise StageError(
                    STAGE, f"{f}:{inc.line}",
                    f"includes <{inc.path}>, a header of a third-party project (CUTLASS, FlashAttention, ...) that "
                    f"vLLM fetches at build time; it is not in the source tree and cannot be embedded",
                    "choose a variant that does not use this kernel, or leave this op out of the bundle")
            if not inc.angled:
                raise StageError(
                    STAGE, f"{f}:{inc.line}",
                    f'#include "{inc.path}" is not in the tree (searched {posixpath.dirname(f) or "."}/ and '
                    f"{', '.join(d + '/' for d in include_dirs) or 'no include dirs'}); a header outside the tree "
                    f"(or one generated at build time) cannot be embedded", "check that tree/csrc is complete, or leave this op out of the bundle")
            external.add(inc.path)
    return seen, sorted(external)


def _kernels(text: str) -> list[str]:
    t = cpp.strip_comments(text)
    return sorted(set(re.findall(r"__global__\s+(?:[\w:<>,*&\s]+?\s+)?(\w+)\s*\(", t)))


def _copyright_lines(text: str) -> list[str]:
    out = []
    for line in text.splitlines()[:40]:
        s = line.strip().lstrip("/*").strip().rstrip("*/").strip()
        if re.search(r"copyright|SPDX-|adapted from", s, re.I) and s not in out:
            out.append(s)
    return out


def plan_ops(tree_root: Path, graph: dict) -> tuple[list[OpPlan], dict]:
    tree = Tree(tree_root)
    if not (tree.root / "csrc").is_dir():
        raise StageError(STAGE, "tree/csrc", "the tree has no csrc/ directory",
                         "give A4 the tree's csrc/**, CMakeLists.txt and cmake/** files")
    if not (tree.root / "CMakeLists.txt").is_file():
        raise StageError(STAGE, "tree/CMakeLists.txt", "missing; the compile definitions and flags come from it",
                         "give A4 the tree's CMakeLists.txt and cmake/** files")
    info = cmake.read(tree.root)
    reg = registry.scan(tree.root, lambda rel: (info.target_of(rel).name if info.target_of(rel) else None),
                        _defines(info, None) | {"USE_CUDA": None})
    all_sources = sorted(p.relative_to(tree.root).as_posix() for p in (tree.root / "csrc").rglob("*")
                         if p.suffix in SOURCE_EXTS and p.is_file())
    plans = []
    skipped: list[dict] = []
    for entry in graph.get("cuda_ops", []):
        try:
            plans.append(_plan_op(entry, tree, info, reg, all_sources))
        except StageError as e:
            foreign = _foreign_registration(tree, entry, reg)
            if not (is_optional(entry) or foreign):
                raise
            skipped.append(_skip_record(entry, e, reg, foreign))
    # The same op listed twice (e.g. once with an overload) is bundled once.
    uniq: list[OpPlan] = []
    for p in plans:
        if all(q.op != p.op for q in uniq):
            uniq.append(p)
    plans = uniq
    counts: dict[str, int] = {}
    for p in plans:
        counts[p.name] = counts.get(p.name, 0) + 1
    for p in plans:
        p.reg_name = p.name if counts[p.name] == 1 else f"{p.namespace.strip('_')}__{p.name}"
    return plans, {"info": info, "tree": tree, "registry": reg, "skipped": skipped}


def _plan_op(entry: dict, tree: Tree, info: cmake.BuildInfo, reg, all_sources: list[str]) -> OpPlan:
    """One op of A1's cuda_ops: its registration, its CUDA implementation and the source defining it."""
    op = entry.get("op") or f"{entry.get('namespace')}.{entry.get('name')}"
    ns, name = _op_key(entry)
    defs = reg.defs.get((ns, name))
    if not defs:
        near = sorted(n for (s, n) in reg.defs if n == name)
        raise StageError(
            STAGE, f"op {op}",
            f"no registration ops.def(\"{name}(...)\") in library {ns} among {len(reg.binding_files)} files with "
            f"TORCH_LIBRARY blocks under csrc/ ({', '.join(reg.binding_files[:6])}"
            f"{', ...' if len(reg.binding_files) > 6 else ''}); libraries seen: {', '.join(sorted(reg.namespaces))}"
            + (f"; {name} is registered in {', '.join(s for (s, n) in reg.defs if n == name)}" if near else ""),
            "check the op name against the tree's torch_bindings.cpp, or that A1 read the same vLLM version")
    d = defs[0]
    impls = reg.impls.get((ns, name), [])
    impl = registry.best_impl(impls)
    if impl is None:
        keys = ", ".join(sorted({i.key for i in impls})) or "none"
        raise StageError(
            STAGE, f"op {op}",
            f"registered in {d.file}:{d.line} but has no CUDA implementation (ops.impl(\"{name}\", ...) for "
            f"CUDA or a composite key); keys found: {keys}", "this op cannot run on an NVIDIA GPU in a bundle")
    fn_base = re.sub(r"<.*>$", "", impl.fn).split("::")[-1]
    src, line = _implementing_source(op, tree, info, d, impl, fn_base, all_sources)
    decls = _declaring_headers(tree, impl.file, fn_base, info.common_include_dirs)
    src_target = info.target_of(src)
    companions = [] if not src.endswith(SOURCE_EXTS) else companion_sources(  # a header (ops.h) declares every op
        tree, src, src_target.sources if src_target else
        [s for s in all_sources if not s.startswith(("csrc/cpu/", "csrc/rocm/"))], info.common_include_dirs)
    return OpPlan(op=f"{ns}.{name}", namespace=ns, name=name, schema=d.schema, abi=d.abi,
                  def_file=d.file, def_line=d.line, impl_file=impl.file, impl_line=impl.line,
                  impl_key=impl.key, fn=impl.fn, fn_expr=impl.fn_expr or f"&{impl.fn}",
                  source_file=src, source_line=line, decl_headers=decls, companions=companions,
                  kernels=_kernels(tree.text(src)), call_sites=entry.get("call_sites", []))


def _implementing_source(op: str, tree: Tree, info: cmake.BuildInfo, d, impl, fn_base: str,
                         all_sources: list[str]) -> tuple[str, int]:
    """(file, line) of the definition of the op's C++ function: in the sources of its CMake target, else in a
    header the binding file includes, else anywhere under csrc/ (not the CPU or ROCm sources)."""
    target = info.target_of(impl.file) or info.target_of(d.file)
    candidates = [s for s in (target.sources if target else []) if tree.exists(s) and s.endswith(SOURCE_EXTS)]
    searched = f"the {len(candidates)} sources of CMake target {target.name}" if target else ""
    hits = find_definition(tree, candidates, fn_base)
    if not hits:
        # an inline definition in a header the binding file includes (e.g. ops.h)
        try:
            hdrs, _ = include_closure(tree, [impl.file], info.common_include_dirs or ["csrc"],
                                      _defines(info, target))
        except StageError:
            hdrs = []
        hdrs = [h for h in hdrs if h != impl.file and not h.endswith(SOURCE_EXTS)]
        hits = find_definition(tree, hdrs, fn_base)
        searched += f"{', ' if searched else ''}the {len(hdrs)} headers {impl.file} includes"
    if not hits:
        pool = [s for s in all_sources if not s.startswith(("csrc/cpu/", "csrc/rocm/"))]
        hits = find_definition(tree, pool, fn_base)
        searched = (searched + " and " if searched else "") + f"{len(pool)} .cu/.cpp files under csrc/"
    if not hits:
        raise StageError(
            STAGE, f"op {op}",
            f"registered in {d.file}:{d.line} with implementation {impl.fn_expr or impl.fn} ({impl.file}:{impl.line}), "
            f"but no definition of the C++ function {fn_base}(...) was found in {searched}",
            "check that tree/csrc is complete (the source may be generated at build time, which a bundle cannot embed)")
    # prefer .cu over .cpp, then closest to the binding file
    hits.sort(key=lambda h: (not h[0].endswith(".cu"), distance(h[0], impl.file)))
    return hits[0]


# What find_package(Torch) adds to every CUDA compile of a CMake project such as vLLM's
# (torch/share/cmake/Caffe2/public/cuda.cmake); torch.utils.cpp_extension adds only the first. vLLM's quantization
# kernels use __device__ lambdas, which need the second.
TORCH_CMAKE_NVCC_FLAGS = ["--expt-relaxed-constexpr", "--expt-extended-lambda"]
# nvcc (>= 11.8) optimises a file's device functions on all cores instead of one: a unit's first compile is bound by
# its slowest file (H100, 16 cores: vLLM's topk_softmax_kernels.cu 54.5 -> 31.0 s, the MoE layer's cold run 64.8 ->
# 41.0 s, benchmarks/results/2026-12-07-cold-build-3.txt). The device code is still compiled per kernel.
PARALLEL_NVCC_FLAGS = ["-split-compile=0"]


def is_optional(entry: dict) -> bool:
    """A1 may mark an op whose call sites sit only in branches the variant does not take:
    `"required": false` (or `"optional": true`). Such an op that cannot be bundled gets a stub."""
    return entry.get("required") is False or entry.get("optional") is True


def _op_key(entry: dict) -> tuple[str, str]:
    op = entry.get("op") or f"{entry.get('namespace')}.{entry.get('name')}"
    ns = entry.get("namespace") or op.split(".", 1)[0]
    name = (entry.get("name") or op.split(".", 1)[1]).split(".")[0]
    return ns, name


def _skip_record(entry: dict, err: StageError, reg, foreign: tuple[str, str] | None = None) -> dict:
    ns, name = _op_key(entry)
    defs = reg.defs.get((ns, name)) if reg is not None else None
    if foreign:
        return {"op": f"{ns}.{name}", "namespace": ns, "name": name, "schema": foreign[1],
                "reason": f"registered only in {foreign[0]}, another platform's build (never built for CUDA)",
                "why": "another platform's op"}
    return {"op": f"{ns}.{name}", "namespace": ns, "name": name, "schema": defs[0].schema if defs else None,
            "reason": f"{err.input}: {err.problem}"}


# vLLM's CPU and ROCm builds: their bindings register ops no CUDA build has.
_FOREIGN_BINDINGS = ("csrc/cpu", "csrc/rocm")


def _foreign_registration(tree: Tree, entry: dict, reg) -> tuple[str, str] | None:
    """(file, schema) of the registration of an op that the tree registers only in another platform's bindings
    (A1 reached a call of it in a path that platform takes, e.g. a CPU attention backend's `ops.bmm_cpu`): the
    bundle gets a wrapper that raises when called, as for an optional op; None if it is not such an op."""
    ns, name = _op_key(entry)
    if reg.defs.get((ns, name)):
        return None
    for d in _FOREIGN_BINDINGS:
        root = tree.root / d
        for p in sorted(root.rglob("*")) if root.is_dir() else []:
            if p.suffix in SOURCE_EXTS and p.is_file():
                for m in _DEF_CALL.finditer(p.read_text(encoding="utf-8", errors="replace")):
                    schema = "".join(re.findall(r'"([^"]*)"', m.group(1)))   # adjacent literals concatenate
                    if schema.startswith(name + "("):
                        return p.relative_to(tree.root).as_posix(), schema
    return None


_DEF_CALL = re.compile(r'\.def\(\s*((?:"[^"]*"\s*)+)')


def _declaring_headers(tree: Tree, binding: str, fn: str, include_dirs: list[str]) -> list[str]:
    out = []
    pat = re.compile(r"\b" + re.escape(fn) + r"\s*\(")
    for inc in cpp.includes(tree.text(binding), {"USE_CUDA": None}):
        r = resolve_include(tree, binding, inc, include_dirs)
        if r and pat.search(cpp.strip_comments(tree.text(r))):
            out.append(r)
    return out


def collect(tree_root: Path, graph: dict) -> tuple[str, dict]:
    plans, ctx = plan_ops(tree_root, graph)
    info: cmake.BuildInfo = ctx["info"]
    tree: Tree = ctx["tree"]
    skipped: list[dict] = ctx["skipped"]
    notes: list[str] = []
    if not plans and not skipped:
        manifest = {"status": "ok", "cuda_files": [], "ops": [], "wrappers": [], "flags": {}, "imports": [],
                    "bundle_hash": None, "exported_ops": [], "skipped_ops": [],
                    "notes": ["no compiled ops in A1.graph.json cuda_ops"]}
        return emit.empty_section(), manifest

    defs_union, defines = _compile_definitions(info, plans, notes)
    include_dirs = info.common_include_dirs or ["csrc"]
    optional_ops = {"%s.%s" % _op_key(e) for e in graph.get("cuda_ops", []) if is_optional(e)}
    plans, closure, files, external = _include_closures(tree, plans, include_dirs, defines, optional_ops, skipped)
    if not plans:
        text, stub_wrappers = emit.stubs_only(skipped)
        return text, {"status": "ok", "cuda_files": [], "ops": [], "wrappers": stub_wrappers, "flags": {},
                      "imports": list(emit.STUB_IMPORTS) if skipped else [],
                      "bundle_hash": None, "skipped_ops": skipped, "exported_ops": [],
                      "notes": notes + [f"optional op {x['op']} not bundled: {x['reason']}" for x in skipped]}
    abis = {p.abi for p in plans}
    if "stable" in abis:
        external_needed = ["torch/csrc/stable/library.h"]
    else:
        external_needed = ["torch/library.h"]

    flags = _compile_flags(info, defs_union, include_dirs, graph, notes)
    tus = plan_translation_units(plans, closure)
    cuda_files = _cuda_files(tree, files, tus)
    bundle_hash, namespaces = _key_translation_units(tus, cuda_files, flags)
    text, wrappers = emit.section(plans, {f: tree.text(f) for f in files}, cuda_files, tus, namespaces, flags, skipped)
    notes.append(f"{len(tus)} translation unit(s), one per implementing source file as vLLM's CMake compiles them "
                 f"({', '.join(tu.id + ': ' + tu.source_file for tu in tus)}); each is built by its own "
                 "torch.utils.cpp_extension.load call into its own library (in parallel, on first use), its companion "
                 "sources compiled on their own and linked in, cached under its content key and shared with every "
                 "bundle that embeds the same unit, and registers its ops into its own namespace")
    notes += [f"optional op {x['op']} not bundled (its wrapper raises NotImplementedError): {x['reason']}"
              for x in skipped]
    manifest = {
        "status": "ok",
        "bundle_hash": bundle_hash,
        "cuda_files": cuda_files,
        "translation_units": [{"id": tu.id, "source_file": tu.source_file, "companion_sources": tu.companions,
                               "compiled_files": [name for name, _ in tu.sources],
                               "ops": [p.op for p in tu.plans],
                               "files": tu.files, "lines": tu.lines, "key": tu.key, "namespace": tu.namespace,
                               "extension": f"{tu.namespace}_{tu.id}_sm<arch>"} for tu in tus],
        "ops": [{"op": p.op, "namespace": p.namespace, "name": p.name, "schema": p.schema, "abi": p.abi,
                 "binding_file": p.def_file, "def_line": p.def_line, "impl_file": p.impl_file,
                 "impl_line": p.impl_line, "dispatch_key": p.impl_key, "cpp_function": p.fn,
                 "source_file": p.source_file, "source_line": p.source_line, "declared_in": p.decl_headers,
                 "kernels": p.kernels, "bundled_as": f"torch.ops.{namespaces[p.tu]}.{p.reg_name}",
                 "translation_unit": p.tu} for p in plans],
        "wrappers": wrappers,
        "exported_ops": [p.op for p in plans],
        "skipped_ops": skipped,
        "flags": flags,
        "external_headers": sorted(set(external) | set(external_needed)),
        "imports": list(emit.IMPORTS),
        "notes": notes,
    }
    return text, manifest


def _compile_definitions(info: cmake.BuildInfo, plans: list[OpPlan], notes: list[str]) -> tuple[list[str], dict]:
    """(the compile definitions of the ops' extension targets, the macros they and torch's flags define). One
    target's settings apply to all bundled sources; ops of different targets (e.g. _C and _moe_C) share the same
    flags in vLLM's CMake today; a difference is noted."""
    targets = []
    for p in plans:
        t = info.target_of(p.source_file) or info.target_of(p.impl_file)
        if t and t not in targets:
            targets.append(t)
    defs_union: list[str] = []
    for t in targets:
        for dfn in t.definitions:
            if dfn not in defs_union:
                defs_union.append(dfn)
    if len({tuple(t.definitions) for t in targets}) > 1:
        notes.append("targets " + ", ".join(t.name for t in targets) + " have different compile definitions; "
                     "their union is used: " + ", ".join(defs_union))
    defines = {}
    for item in defs_union + info.torch_flag_additions + info.gpu_flags:
        item = item[2:] if item.startswith("-D") else item
        if item and not item.startswith("-"):
            k, _, v = item.partition("=")
            defines[k] = v or None
    return defs_union, defines


def _include_closures(tree: Tree, plans: list[OpPlan], include_dirs: list[str], defines: dict,
                      optional_ops: set[str], skipped: list[dict]) -> tuple[list[OpPlan], dict, list[str], list[str]]:
    """(the ops kept, each op's include closure (declaring headers, then its source), every file in discovery
    order, the external headers). An optional op whose closure cannot be embedded joins `skipped`."""
    files: list[str] = []
    external: list[str] = []
    kept = []
    closure: dict[str, list[str]] = {}
    for p in plans:
        try:
            fs, ext = include_closure(tree, [p.source_file] + p.companions, include_dirs, defines)
        except StageError as e:
            err = StageError(STAGE, f"op {p.op} ({p.source_file}, via {e.input})", e.problem, e.remedy)
            if p.op in optional_ops:
                skipped.append({"op": p.op, "namespace": p.namespace, "name": p.name, "schema": p.schema,
                                "reason": f"{err.input}: {err.problem}"})
                continue
            raise err from None
        kept.append(p)
        closure[p.op] = fs
        files += [f for f in fs if f not in files]
        external += [x for x in ext if x not in external]
    return kept, closure, files, external


def _compile_flags(info: cmake.BuildInfo, defs_union: list[str], include_dirs: list[str], graph: dict,
                   notes: list[str]) -> dict:
    """The compile settings from CMake, for the variant's GPU arch (A4.manifest.json's flags)."""
    std = info.cuda_standard or info.cxx_standard
    d_flags = [f"-D{x}" for x in defs_union]
    add_flags = [f for f in info.torch_flag_additions + info.gpu_flags if f not in d_flags]
    undef = [f"-U{f[2:]}" for f in info.torch_flag_removals if f.startswith("-D")]
    cflags = ([f"-std=c++{info.cxx_standard}"] if info.cxx_standard else []) + d_flags + \
        [f for f in add_flags if f.startswith(("-D", "-U"))]
    cuda_cflags = (["-O3"] + PARALLEL_NVCC_FLAGS + ([f"-std=c++{std}"] if std else []) + d_flags + add_flags + undef
                   + TORCH_CMAKE_NVCC_FLAGS)
    if info.skipped:
        notes.append(f"{len(info.skipped)} CMake settings under build-machine conditions (GPU arch lists, NVCC_THREADS, "
                     "toolkit >= 13 options) are not applied: " + "; ".join(info.skipped))
    arch = str(int((graph.get("variant") or {}).get("cuda_capability", 90)))
    gencode = [f"-gencode=arch=compute_{arch},code=sm_{arch}"]
    notes.append("CUDA version tests in CMake are evaluated for a toolkit >= "
                 f"{cmake.MIN_CUDA[0]}.{cmake.MIN_CUDA[1]}; the GPU arch is sm_{arch}, the variant's cuda_capability "
                 f"({' '.join(gencode)})")
    return {"cflags": cflags, "cuda_cflags": cuda_cflags, "include_dirs": ["."] + include_dirs,
            "defines": defs_union, "undefines": undef, "cxx_standard": info.cxx_standard,
            "cuda_standard": info.cuda_standard, "arch": arch, "gencode": gencode,
            "applies_to": "every translation unit",
            "load": {"name": "<namespace>_<translation unit id>_sm<arch>",
                     "sources": "[the unit's compiled_files, written to its build_directory]",
                     "is_python_module": False,
                     "build_directory": "<cache>/cuda/<translation unit key>/build_<torch>_<cuda>_sm<arch>"},
            "from": info.files_read}


def _cuda_files(tree: Tree, files: list[str], tus: list[TranslationUnit]) -> list[dict]:
    """The manifest's record of each embedded file; sets each unit's line count and text."""
    tu_of_file: dict[str, list[str]] = {}
    for tu in tus:
        for f in tu.files:
            tu_of_file.setdefault(f, []).append(tu.id)
    cuda_files = []
    for f in files:
        raw = tree.raw(f)
        cuda_files.append({"path": f, "role": "source" if f.endswith(SOURCE_EXTS) else "header",
                           "lines": raw.decode("utf-8", errors="replace").count("\n"),
                           "sha256": hashlib.sha256(raw).hexdigest(),
                           "copyright": _copyright_lines(raw.decode("utf-8", errors="replace")),
                           "translation_units": tu_of_file.get(f, [])})
    lines_of = {f["path"]: f["lines"] for f in cuda_files}
    for tu in tus:
        tu.lines = sum(lines_of[f] for f in tu.files)
        tu.sources = [(tu.id + ".cu", emit.tu_source(tu, "{NS}"))]
        used = {tu.id}
        for c in tu.companions:  # its own file name: the library's object files are named by their sources
            name = _tu_id(c, used)
            used.add(name)
            tu.sources.append((name + posixpath.splitext(c)[1], emit.companion_source(tu, c)))
    return cuda_files


def _key_translation_units(tus: list[TranslationUnit], cuda_files: list[dict], flags: dict) -> tuple[str, dict]:
    """Sets each unit's content key and namespace; returns (the bundle's hash, unit id -> namespace)."""
    sha_of = {f["path"]: f["sha256"] for f in cuda_files}
    settings = repr((flags["cflags"], flags["cuda_cflags"], flags["include_dirs"], flags["gencode"])).encode()
    for tu in tus:
        h = hashlib.sha256(b"vllm-bundler A4 translation unit v2\0")
        for f in tu.files:
            h.update(f.encode() + b"\0" + sha_of[f].encode() + b"\0")
        h.update(tu.id.encode() + b"\0")
        for name, text in tu.sources:
            h.update(name.encode() + b"\0" + text.encode() + b"\0")
        h.update(settings)
        tu.key = h.hexdigest()
        tu.namespace = "vllm_bundle_" + tu.key[:16]
    bundle_hash = hashlib.sha256("\0".join(tu.key for tu in tus).encode()).hexdigest()
    return bundle_hash, {tu.id: tu.namespace for tu in tus}
