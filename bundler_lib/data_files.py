"""Data files that the reached code reads at run time, next to its own module (A3's data part).

vLLM code finds some data through its module's location, e.g. the fused MoE kernel's tuned configs:

    os.path.join(os.path.dirname(os.path.realpath(__file__)), "configs", json_file_name)

In a bundle `__file__` is the bundle, so that path would point beside it. Two steps fix that:

1. `scan` (A3 `--scan-data-reads`): in the reached blocks (rendered exactly as A2/A3 render them) find the
   *anchors*, the expressions that mean "the directory of this module" (`os.path.dirname(__file__)`,
   `os.path.dirname(os.path.realpath|abspath(__file__))`, `[pathlib.]Path(__file__)[.resolve()|.absolute()].parent`),
   and from the path built on each (`os.path.join(anchor, "configs", name)`, `anchor / "configs" / name`) the
   data root it reads (`vllm/model_executor/layers/fused_moe/configs`). A *selector* then says which files of
   that root the target can read: a known reader's own rule (the fused MoE configs: the model's E and N, the
   variant's dtype, any device name), else every non-Python file the path can reach. The result,
   `A3.data_reads.json`, carries the anchors, the rule and its parameters, and the tree globs of the
   candidate files: the Pants rule declares exactly those files as the embedding process's inputs.
2. `embed` (A3 with `--data-reads`): applies the rule to the files present, embeds them (verbatim text, with
   their sha256) in `A3.data.py`, a section that also defines `_bundle_data_dir(<module dir>)`: it writes the
   embedded files once under the bundle cache (`$VLLM_BUNDLE_CACHE`, else `~/.cache/vllm_bundles`) in a
   directory keyed by their content hash, laid out as in the tree, and returns the directory that stands for
   the module's. A5 rewrites each anchor to a call of it; `A3.data.json` records files, hashes and rule.

A file the rule does not select is absent from the materialised directory, so the reading code sees what
vLLM sees on a device without a tuned file (for the MoE configs: `get_default_config`).

3. `embed` with `--moe-configs DIR` (the target's `moe_configs` files, at their workspace paths under DIR): tuned
   fused-MoE configs committed as data of the target are embedded next to vLLM's in its configs root, under their
   own file name, so `get_moe_configs` loads them by device name, E and N as vLLM loads its own. Each must be a vLLM
   MoE config (`bundler_lib/common/moe_configs.py`: the file name pattern, the JSON layout) of a shape the target
   looks up (the selector's rule); a file of the same name as one of vLLM's replaces it (the target's file wins: that
   is what tuning is for), and `A3.data.json` records for each its workspace path (`from`) and the sha256 of the vLLM
   file it replaces (`replaces`).
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import posixpath
import textwrap
from pathlib import Path

from bundler_lib.artifacts import read_json, write_json, write_text
from bundler_lib.errors import StageError
from bundler_lib.common import bundle_cache
from bundler_lib.common.data_anchors import (DATA_JSON, DATA_PY, HELPER, PATH_HELPER, anchor_kind, helper_call,
                                             is_file_name)
from bundler_lib.common.edits import apply_edits, file_header, license_of
from bundler_lib.common.moe_configs import MOE_NAME, STAGE, load_moe_configs
from bundler_lib.common.names import dotted

READS = "A3.data_reads.json"
IMPORTS = ("import os", "import shutil", "import tempfile")
SECTION_HEAD = "# ===== Data files section: files the inlined code reads next to its module, embedded ====="

MAX_BYTES = 8 * 1024 * 1024            # more than this for one target: the selection is surely too wide
NOT_DATA = ("*.py", "*.pyc", "*.pyi", "__pycache__", "__pycache__/*", "*/__pycache__/*")


def _const_str(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _read_path(anchor, parents: dict) -> tuple[list[str], int, ast.AST]:
    """(constant parts after the anchor, number of dynamic parts (-1: not a path built on it), the whole path
    expression)."""
    p = parents.get(id(anchor))
    if isinstance(p, ast.Call) and dotted(p.func) == "os.path.join" and p.args and p.args[0] is anchor:
        consts, rest = [], p.args[1:]
        while rest and _const_str(rest[0]) is not None:
            consts.append(_const_str(rest[0]))
            rest = rest[1:]
        return consts, len(rest), p
    if isinstance(p, ast.BinOp) and isinstance(p.op, ast.Div) and p.left is anchor:
        consts, dyn, expr = [], 0, anchor
        while isinstance(p, ast.BinOp) and isinstance(p.op, ast.Div) and p.left is expr:
            s = _const_str(p.right)
            if s is not None and dyn == 0:
                consts.append(s)
            else:
                dyn += 1
            expr, p = p, parents.get(id(p))
        return consts, dyn, expr
    return [], -1, anchor   # the anchor is used some other way: which files it reaches is unknown


def _local_uses(anchor, parents: dict) -> list[ast.Name] | None:
    """The reads of the local name the anchor is bound to (`pkg_dir = os.path.dirname(__file__)` in a function,
    the name bound nowhere else in it); None when the anchor is not bound so (the reads of a module-level name lie
    in other blocks)."""
    p = parents.get(id(anchor))
    if not (isinstance(p, ast.Assign) and p.value is anchor and len(p.targets) == 1
            and isinstance(p.targets[0], ast.Name)):
        return None
    name, scope = p.targets[0].id, parents.get(id(p))
    while scope is not None and not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
        scope = parents.get(id(scope))
    if scope is None:
        return None
    names = [x for x in ast.walk(scope) if isinstance(x, ast.Name) and x.id == name]
    declared = any(isinstance(x, (ast.Global, ast.Nonlocal)) and name in x.names for x in ast.walk(scope))
    if declared or sum(isinstance(x.ctx, ast.Store) for x in names) != 1:
        return None
    return [x for x in names if isinstance(x.ctx, ast.Load)]


def _reads(anchor, parents: dict) -> list[tuple[list[str], int, ast.AST]]:
    """The paths read through the anchor: built on it directly, or on the local name it is bound to (each use of
    that name a path of its own, so `os.path.join(pkg_dir, "tool")` reads that file, not the whole directory)."""
    uses = _local_uses(anchor, parents)
    if uses is None:
        return [_read_path(anchor, parents)]
    return [_read_path(u, parents) for u in uses]


# ----------------------------------------------------------------------------- selectors

class Selector:
    """Which files under a data root the target can read. `params` are what the rule depends on (recorded);
    `include`/`exclude` are name globs relative to the root (a superset of `select`, for the Pants inputs);
    `select` is the exact rule."""
    name = "all"

    def applies(self, root: str) -> bool:
        return True

    def params(self, model: dict | None, variant: dict) -> dict:
        return {}

    def include(self, params: dict, recursive: bool) -> list[str]:
        return ["**"] if recursive else ["*"]

    def exclude(self, params: dict) -> list[str]:
        return list(NOT_DATA)

    def select(self, name: str, params: dict) -> bool:
        return not any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(posixpath.basename(name), p)
                       for p in NOT_DATA)

    def rule(self, params: dict) -> str:
        return "every non-Python file the path can reach (no selector knows this reader)"

    def when_empty(self, root: str, params: dict) -> str:
        return f"{root}: no file matches; the reading code finds none there"


EXPERT_KEYS = ("num_experts", "n_routed_experts", "num_local_experts")


class MoeConfigs(Selector):
    """The fused MoE kernel's tuned configs (`get_moe_configs` / `get_config_file_name` in fused_moe.py):
    `E=<E>,N=<N>,device_name=<device>[,dtype=<d>][,block_shape=[n,k]].json`, where E is the number of
    experts on the rank (num_experts / ep), N is `w2.shape[2]` (the expert intermediate size on the rank,
    moe_intermediate_size / tp, whole under expert parallelism), dtype is None for bfloat16/float16 weights and
    "float32" for float32 ones
    (`_get_config_dtype_str`, no quantization), and no block shape (unquantized). Every device name is kept:
    the file the running GPU picks is among them when vLLM has one (an H200 maps to NVIDIA_H200)."""
    name = "fused_moe_configs"

    def applies(self, root: str) -> bool:
        return root.endswith("model_executor/layers/fused_moe/configs")

    def params(self, model: dict | None, variant: dict) -> dict:
        out: dict = {"E": None, "N": None, "dtype": None, "block_shape": None}
        if variant.get("dtype") == "float32":
            out["dtype"] = "float32"
        if model is None:
            out["why_none"] = ("the target has no model, so no MoE shape is known: the bundle uses "
                               "get_default_config for every shape, where vLLM would use a tuned file for a shape "
                               "that has one; set `model` on the target to embed that model's")
            return out
        cfg = model
        if not any(k in cfg for k in EXPERT_KEYS) and isinstance(model.get("text_config"), dict):
            cfg = model["text_config"]
        ek = next((k for k in EXPERT_KEYS if isinstance(cfg.get(k), int) and cfg[k] > 0), None)
        nk = "moe_intermediate_size" if isinstance(cfg.get("moe_intermediate_size"), int) else (
            "intermediate_size" if ek == "num_local_experts" and isinstance(cfg.get("intermediate_size"), int)
            else None)
        if ek is None or nk is None:
            out["why_none"] = ("the model config has no MoE sizes (" + "/".join(EXPERT_KEYS) +
                               " and moe_intermediate_size), so no MoE shape is known")
            return out
        ep, tp = int(variant.get("ep", 1)), int(variant.get("tp", 1))
        # under expert parallelism each rank holds whole experts (vLLM's FusedMoEParallelConfig: the experts' tp is 1)
        moe_tp = 1 if ep > 1 else tp
        out["E"] = cfg[ek] // ep
        out["N"] = cfg[nk] // moe_tp
        out["from"] = f"E = {ek} ({cfg[ek]}) / ep ({ep}); N = {nk} ({cfg[nk]}) / the experts' tp ({moe_tp})"
        if variant.get("quantization", "none") != "none":
            out["why_none"] = f"quantization {variant.get('quantization')!r}: its dtype/block shape rule is not known"
            out["E"] = out["N"] = None
        return out

    def include(self, params: dict, recursive: bool) -> list[str]:
        if params.get("E") is None:
            return []
        dt = f",dtype={params['dtype']}" if params.get("dtype") else ""
        return [f"E={params['E']},N={params['N']},device_name=*{dt}.json"]

    def exclude(self, params: dict) -> list[str]:
        return [] if params.get("dtype") else ["*,dtype=*", "*,block_shape=*"]

    def select(self, name: str, params: dict) -> bool:
        m = MOE_NAME.fullmatch(name)
        if not m or params.get("E") is None:
            return False
        e, n, _dev, dtype, block, other = m.groups()
        return (int(e) == params["E"] and int(n) == params["N"] and dtype == params.get("dtype")
                and block is None and other is None)

    def when_empty(self, root: str, params: dict) -> str:
        if params.get("E") is None:
            return f"{root}: nothing embedded ({params.get('why_none')})"
        return (f"{root}: vLLM has no tuned config for E={params['E']},N={params['N']} "
                f"(dtype={params.get('dtype')}) on any device: get_moe_configs finds none and the kernel uses "
                "get_default_config, as vLLM does")

    def rule(self, params: dict) -> str:
        if params.get("E") is None:
            return "tuned fused-MoE configs: none embedded (" + params.get("why_none", "") + ")"
        dt = f"dtype={params['dtype']}" if params.get("dtype") else "dtype=None (bfloat16/float16 weights)"
        return (f"tuned fused-MoE configs E={params['E']},N={params['N']}, {dt}, no block shape (unquantized), "
                f"any device_name ({params['from']})")


SELECTORS: tuple[Selector, ...] = (MoeConfigs(),)


def selector_for(root: str) -> Selector:
    return next((s for s in SELECTORS if s.applies(root)), Selector())


# ----------------------------------------------------------------------------- scan

def _render(node: dict, lines: list[str]) -> str:
    """The node's text exactly as A2/A3 inline it (A1's edits applied)."""
    if "text" in node:
        return node["text"]
    return apply_edits(lines, node["line"], node["end_line"], node.get("edits", []))


def scan(tree: Path, graph: dict, model: dict | None) -> dict:
    """A3.data_reads.json: the anchors of the reached blocks, grouped by the data root they read, with the
    selection rule and the tree globs of the candidate files. Reads only the files of graph["files"] that
    name `__file__` (the others may be absent from the sandbox)."""
    variant = graph.get("variant") or {}
    texts = _texts_naming_file(Path(tree), graph)
    anchors, other, notes = [], [], []
    groups: dict[str, dict] = {}
    for n in graph.get("python_nodes", []):
        lines = texts.get(n["file"])
        if lines is None:
            continue
        body = _render(n, lines)
        if "__file__" not in body:
            continue
        try:
            mod = ast.parse(body)
        except SyntaxError as e:
            raise StageError(STAGE, f"{n['file']}:L{n['line']}-L{n['end_line']}", f"the block does not parse ({e.msg})",
                             "the tree changed since A1 ran: rerun the A1 graph stage") from None
        parents = {id(c): p for p in ast.walk(mod) for c in ast.iter_child_nodes(p)}
        seen: set[int] = set()
        for x in ast.walk(mod):
            kind = anchor_kind(x)
            if kind is None:
                continue
            seen.update(id(y) for y in ast.walk(x))
            reads = _reads(x, parents)
            entry = _anchor(n, x, kind, reads)
            anchors.append(entry)
            _group_reads(n, entry, reads, lines, groups, notes)
        for x in ast.walk(mod):
            if is_file_name(x) and id(x) not in seen:
                other.append(n["id"])
    for o in sorted(set(other)):
        notes.append(f"{o}: `__file__` is used other than as the module's directory; it stays as is and "
                     "names the bundle file")
    data = [_data_root(root, groups[root], model, variant) for root in sorted(groups)]
    anchors.sort(key=lambda a: (a["file"], a["lines"], a["block_line"], a["expr"]))
    return {
        "status": "ok",
        "symbol": graph.get("symbol"),
        "model": bool(model is not None),
        "anchors": anchors,
        "data": data,
        "globs": [g for d in data for g in d["globs"]],
        "notes": sorted(set(notes)),
    }


def _texts_naming_file(tree: Path, graph: dict) -> dict[str, list[str]]:
    """The lines of each file of the graph that names `__file__`."""
    texts: dict[str, list[str]] = {}
    for rel in sorted(set(graph.get("files", [])) | {n["file"] for n in graph.get("python_nodes", [])}):
        p = tree / rel
        if p.is_file():
            text = p.read_text(encoding="utf-8")
            if "__file__" in text:
                texts[rel] = text.splitlines(keepends=True)
    return texts


def _anchor(n: dict, x: ast.AST, kind: str, reads: list) -> dict:
    """The record of one module-directory anchor `x` of node `n`, and the helper call A5 puts in its place."""
    module_dir = posixpath.dirname(n["file"])
    return {"id": n["id"], "file": n["file"], "kind": kind, "expr": ast.unparse(x),
            "lines": [n["line"], n["end_line"]], "block_line": x.lineno, "dir": module_dir,
            "to": helper_call(kind, module_dir),
            "path": "; ".join(ast.unparse(expr) for _, _, expr in reads) or ast.unparse(x)}


def _group_reads(n: dict, entry: dict, reads: list, lines: list[str], groups: dict[str, dict],
                 notes: list[str]) -> None:
    """Adds each path an anchor reads to the group of its data root: a fixed file, the root's children (one
    computed name) or everything under it."""
    module_dir = entry["dir"]
    for consts, dyn, expr in reads:
        path = ast.unparse(expr)
        root = posixpath.normpath(posixpath.join(module_dir, *consts))
        if root.startswith("../") or root == "..":
            notes.append(f"{n['id']}: `{path}` reads outside the tree; nothing embedded for it")
            continue
        if dyn == 0 and consts:
            match = "file"          # a fixed path: that file (or, if it is a directory, all under it)
        elif dyn == 1:
            match = "children"      # one computed name: any file directly in root
        else:
            match = "recursive"
            if dyn < 0:
                notes.append(f"{n['id']}: the module directory (`{entry['expr']}`) is used in a way A3 "
                             "cannot follow; every non-Python file under it is a candidate")
        g = groups.setdefault(root, {"root": root, "readers": set(), "paths": set(), "match": set(),
                                     "licenses": set()})
        g["licenses"].add(license_of(file_header(lines)))
        g["readers"].add(n["id"])
        g["paths"].add(path)
        g["match"].add(match)


def _data_root(root: str, g: dict, model: dict | None, variant: dict) -> dict:
    """One data root: how its files are matched, the selector's rule and parameters, and the tree globs."""
    sel = selector_for(root)
    match = "recursive" if "recursive" in g["match"] else ("children" if "children" in g["match"] else "file")
    if match == "file":             # a fixed path is read whatever the selectors say
        sel = Selector()
    params = sel.params(model, variant)
    inc = sel.include(params, match != "children")
    exc = sel.exclude(params)
    inc_globs = ([root] if match == "file" else []) + [f"{root}/{p}" for p in inc]
    exc_globs = [f"!{root}/{p}" for p in exc] + ([f"!{root}/**/{p}" for p in exc] if match != "children" else [])
    globs = inc_globs + exc_globs if inc_globs else []
    return {
        "root": root,
        "readers": sorted(g["readers"]),
        "paths": sorted(g["paths"]),
        "license": " AND ".join(sorted(g["licenses"])),
        "match": match,
        "selector": sel.name,
        "params": params,
        "rule": sel.rule(params),
        "include": inc,
        "exclude": exc,
        "globs": globs,
    }


def load_model(path: Path | None) -> dict | None:
    if path is None:
        return None
    try:
        return read_json(Path(path))
    except FileNotFoundError:
        raise StageError(STAGE, f"--model-config {path}", "file not found", "pass the model's config.json") from None
    except ValueError as e:
        raise StageError(STAGE, f"--model-config {path}", f"not valid JSON ({e})", "fix the model's config.json") \
            from None


# ----------------------------------------------------------------------------- embed

def _candidates(tree: Path, d: dict) -> list[tuple[str, str]]:
    """(tree-relative path, name relative to the root) of the files present under the root that the
    include/exclude globs admit; a fixed path that is a file is itself."""
    root = tree / d["root"]
    if d["match"] == "file" and root.is_file():
        return [(d["root"], posixpath.basename(d["root"]))]
    if not root.is_dir():
        return []
    if d["match"] == "children":
        names = sorted(p.name for p in root.iterdir() if p.is_file())
    else:
        names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    out = []
    for name in names:
        inc = any(p == "**" or fnmatch.fnmatchcase(name, p) for p in d["include"])
        exc = any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(posixpath.basename(name), p)
                  for p in d["exclude"])
        if inc and not exc:
            out.append((f"{d['root']}/{name}", name))
    return out


def _py_text(text: str) -> str:
    """A Python literal that evaluates to exactly `text`, one source line per line of the file."""
    lines = text.splitlines(keepends=True)
    if not lines:
        return "''"
    return "(\n" + "\n".join("        " + repr(ln) for ln in lines) + "\n    )"


def _overlay(d: dict, sel: Selector, overlay: dict[str, tuple[str, bytes]], files: dict, chosen: list[dict]) -> None:
    """Adds the target's tuned configs to the data root `d` (vLLM's configs folder), each as its own file name there:
    one of vLLM's of that name is replaced. Each must be of a shape the target looks up."""
    replaced = {f["path"]: f["sha256"] for f in chosen}
    for name, (source, raw) in sorted(overlay.items()):
        if not sel.select(name, d["params"]):
            raise StageError(STAGE, source, f"is not a config this target looks up; it reads {sel.rule(d['params'])}",
                             "name in moe_configs only files of that shape (tune-moe writes them)")
        rel = f"{d['root']}/{name}"
        sha = hashlib.sha256(raw).hexdigest()
        was = replaced.get(rel)
        files[rel] = (raw.decode("utf-8"), f"the target's moe_configs: {source}"
                      + (f"; replaces vLLM's file, sha256={was}" if was else ""))
        chosen[:] = [f for f in chosen if f["path"] != rel]
        chosen.append({"path": rel, "sha256": sha, "size": len(raw), "from": source}
                      | ({"replaces": was} if was else {}))
    chosen.sort(key=lambda f: f["path"])


def embed(tree: Path, reads: dict, moe_configs: dict[str, tuple[str, bytes]] | None = None) -> tuple[str, dict]:
    """(A3.data.py, A3.data.json) for the reads `scan` found, over the files present in the tree, and the target's
    tuned fused-MoE configs (`load_moe_configs`) added to vLLM's."""
    tree = Path(tree)
    data, files, notes = [], {}, list(reads.get("notes", []))
    moe_roots = [d for d in reads.get("data", []) if d["selector"] == MoeConfigs.name]
    if moe_configs and not moe_roots:
        raise StageError(STAGE, "moe_configs " + ", ".join(s for s, _ in moe_configs.values()),
                         "the bundle reads no fused-MoE configs (vLLM's get_moe_configs is not in its closure)",
                         "remove moe_configs from the target")
    for d in reads.get("data", []):
        sel = Selector() if d["match"] == "file" else selector_for(d["root"])
        if sel.name != d["selector"]:
            raise StageError(STAGE, f"--data-reads ({d['root']})", f"selector {d['selector']!r} is not this "
                             f"bundler's ({sel.name!r})", "rerun the scan with the same bundler_lib")
        chosen = []
        for rel, name in _candidates(tree, d):
            if not sel.select(name, d["params"]):
                continue
            raw = (tree / rel).read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise StageError(STAGE, rel, "is not UTF-8 text; only text data files are embedded",
                                 "add a selector in bundler_lib/data_files.py that leaves it out") from None
            files[rel] = (text, d.get("license") or license_of([]))
            chosen.append({"path": rel, "sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)})
        if moe_configs and d is moe_roots[0]:
            _overlay(d, sel, moe_configs, files, chosen)
        if not chosen:
            notes.append(sel.when_empty(d["root"], d["params"]))
        data.append({k: d[k] for k in ("root", "readers", "paths", "license", "selector", "params", "rule", "globs")}
                    | {"files": chosen, "bytes": sum(f["size"] for f in chosen)})
    total = sum(len(t.encode("utf-8")) for t, _ in files.values())
    if total > MAX_BYTES:
        big = max(data, key=lambda d: d["bytes"])
        raise StageError(STAGE, big["root"], f"{total} bytes of data files selected (limit {MAX_BYTES})",
                         "add a selector for this reader in bundler_lib/data_files.py that picks what the target "
                         "can read")
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + hashlib.sha256(files[rel][0].encode("utf-8")).digest())
    key = h.hexdigest()
    anchors = reads.get("anchors", [])
    kinds = {a["kind"] for a in anchors}
    text = section(files, key, kinds, data) if anchors else ""
    manifest = {
        "status": "ok",
        "key": key,
        "anchors": anchors,
        "data": data,
        "files": len(files),
        "bytes": total,
        "helpers": sorted(([HELPER] if anchors else []) + ([PATH_HELPER] if "path" in kinds else [])),
        "imports": list(IMPORTS) if anchors else [],
        "notes": notes,
    }
    return text, manifest


def _comment(text: str, width: int = 110) -> list[str]:
    return ["# " + ln for ln in textwrap.wrap(text, width - 2, break_long_words=False, break_on_hyphens=False)]


def section(files: dict[str, tuple[str, str]], key: str, kinds: set[str], data: list[dict]) -> str:
    out = [SECTION_HEAD]
    for d in data:
        own = [f["from"] for f in d["files"] if "from" in f]
        out += _comment(f"{d['root']}: {len(d['files'])} file(s), read by "
                        + ", ".join(r.split("::")[1] + f" ({r.split('::')[0]})" for r in d["readers"])
                        + f". Selected: {d['rule']}."
                        + (f" {len(own)} of them from the target's moe_configs (its own, not vLLM's): "
                           + ", ".join(own) + "." if own else ""))
    out += _comment(f"Where vLLM reads them next to its module (the module's directory from its file name), the "
                    f"bundle calls {HELPER}(<that directory in the tree>) (A5; see A5.bindmap.json), which "
                    "writes them once under the bundle cache, keyed by their content hash.")
    out.append("_BUNDLE_DATA_FILES = {")
    for rel in sorted(files):
        text, lic = files[rel]
        sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
        out.append(f"    # --- Embedded from {rel} ({lic}) sha256={sha} ---")
        out.append(f"    {rel!r}: {_py_text(text)},")
    out.append("}")
    out.append(f"_BUNDLE_DATA_KEY = {key!r}  # sha256 over the embedded files' paths and contents")
    out.append("_BUNDLE_DATA_ROOT = None")
    out.append("")
    out.append(bundle_cache.helper("_bundle_data_cache_base"))
    out.append(HELPER_CODE.strip("\n"))
    if "path" in kinds:
        out.append("")
        out.append(PATH_HELPER_CODE.strip("\n"))
    return "\n".join(out) + "\n"


HELPER_CODE = r'''
def _bundle_data_dir(module_dir):
    """The directory that stands for vLLM's `module_dir` (e.g. "vllm/model_executor/layers/fused_moe"):
    the embedded data files, written once under the bundle cache in a directory keyed by their content
    hash and laid out as in the vLLM tree. Files that were not embedded are simply absent there."""
    global _BUNDLE_DATA_ROOT
    if _BUNDLE_DATA_ROOT is None:
        base = _bundle_data_cache_base()
        root = os.path.join(base, "data-" + _BUNDLE_DATA_KEY[:32])
        if not os.path.exists(os.path.join(root, ".complete")):
            os.makedirs(base, exist_ok=True)
            tmp = tempfile.mkdtemp(prefix=".data-", dir=base)
            for rel, text in _BUNDLE_DATA_FILES.items():
                path = os.path.join(tmp, *rel.split("/"))
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w", encoding="utf-8", newline="") as f:
                    f.write(text)
            with open(os.path.join(tmp, ".complete"), "w") as f:
                f.write(_BUNDLE_DATA_KEY + "\n")
            try:
                os.rename(tmp, root)
            except OSError:  # another process won the race, or a partial copy is in the way
                if os.path.exists(os.path.join(root, ".complete")):
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    shutil.rmtree(root, ignore_errors=True)
                    os.rename(tmp, root)
        _BUNDLE_DATA_ROOT = root
    return os.path.join(_BUNDLE_DATA_ROOT, *module_dir.split("/"))
'''

PATH_HELPER_CODE = r'''
def _bundle_data_path(module_dir):
    """`_bundle_data_dir(module_dir)` as a pathlib.Path (for `Path(__file__).parent`)."""
    import pathlib
    return pathlib.Path(_bundle_data_dir(module_dir))
'''


# ----------------------------------------------------------------------------- stage entry points

def run_scan(tree: Path, graph: dict, model_config: Path | None, out: Path) -> dict:
    reads = scan(tree, graph, load_model(model_config))
    write_json(Path(out) / READS, reads)
    return reads


def load_reads(path: Path) -> dict:
    try:
        reads = read_json(Path(path))
    except FileNotFoundError:
        raise StageError(STAGE, f"--data-reads {path}", "file not found",
                         "run `collect-triton --scan-data-reads` first (it writes A3.data_reads.json)") from None
    except ValueError as e:
        raise StageError(STAGE, f"--data-reads {path}", f"not valid JSON ({e})", "rerun the scan") from None
    if not isinstance(reads, dict) or not isinstance(reads.get("anchors"), list) or not isinstance(reads.get("data"), list):
        raise StageError(STAGE, f"--data-reads {path}", "lacks anchors/data", "rerun the scan")
    return reads


def no_reads(why: str) -> dict:
    return {"status": "ok", "anchors": [], "data": [], "globs": [], "notes": [why]}


def run_embed(tree: Path, reads: dict, out: Path, moe_configs: Path | None = None) -> dict:
    text, manifest = embed(tree, reads, load_moe_configs(moe_configs))
    write_text(Path(out) / DATA_PY, text)
    write_json(Path(out) / DATA_JSON, manifest)
    return manifest
