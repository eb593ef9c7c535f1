"""The vLLM tree a bundle reads: a pinned sdist (fetched, verified, extracted) or a local directory.

Both give the same digest layout: `vllm/`, `csrc/`, `cmake/`, `CMakeLists.txt`, `LICENSE`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pants.base.build_root import BuildRoot

from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import Digest, MergeDigests, PathGlobs, RemovePrefix, Snapshot
from pants.engine.process import FallibleProcessResult, ProcessResult
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import Target
from pants.util.frozendict import FrozenDict

from rules.target_types import SdistSha256Field, SdistVersionField, SourceRootField, VllmSdist, VllmSourceTree
from rules.stages import last_error
from rules.toolchain import StageToolchain

# pip's configuration, so the fetch goes through the index pip is configured with.
_PIP_ENV = ("HOME", "PIP_INDEX_URL", "PIP_CONFIG_FILE", "PIP_CERT", "XDG_CONFIG_HOME", "XDG_CONFIG_DIRS",
            "SSL_CERT_FILE", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy")
TREE_GLOBS = ("vllm/**", "csrc/**", "cmake/**", "CMakeLists.txt", "LICENSE*", "NOTICE*", "COPYING*")


class VllmTreeError(Exception):
    pass


@dataclass(frozen=True)
class VllmTreeRequest:
    target: Target


@dataclass(frozen=True)
class VllmTree:
    digest: Digest
    description: str


@dataclass(frozen=True)
class _SdistRequest:
    version: str
    sha256: str


@rule(desc="Fetch and extract a vLLM sdist")
async def sdist_tree(request: _SdistRequest, toolchain: StageToolchain) -> VllmTree:
    env = await Get(EnvironmentVars, EnvironmentVarsRequest(_PIP_ENV))
    name = f"vllm-{request.version}.tar.gz"
    fetched = await Get(
        FallibleProcessResult,
        toolchain.process(
            ("fetch", "--version", request.version, "--sha256", request.sha256, "--out", "out"),
            module="bundler_lib.sdist",
            description=f"Fetch {name} (sha256 {request.sha256[:12]}...)",
            input_digest=toolchain.sdist_tool,
            extra_env=FrozenDict(env),
        ),
    )
    if fetched.exit_code != 0:
        raise VllmTreeError(last_error(fetched.stderr))
    extracted = await Get(
        ProcessResult,
        toolchain.process(
            ("extract", "--archive", f"out/{name}", "--out", "tree"),
            module="bundler_lib.sdist",
            description=f"Extract {name}",
            input_digest=await Get(Digest, MergeDigests([toolchain.sdist_tool, fetched.output_digest])),
            output_directories=("tree",),
        ),
    )
    digest = await Get(Digest, RemovePrefix(extracted.output_digest, "tree"))
    return VllmTree(digest, f"vllm {request.version} sdist")


def outside_link(build_root: str, root: str, files) -> str | None:
    """The first file of the tree (workspace-relative) whose path passes through a symlink that resolves outside
    `root`, with where it resolves to; None when every file stays inside. Pants follows symlinks when it reads the
    workspace, so such a link would bring an outside file into the tree under a tree path."""
    base = os.path.realpath(os.path.join(build_root, root))
    for f in sorted(files):
        real = os.path.realpath(os.path.join(build_root, f))
        if real != base and not real.startswith(base + os.sep):
            # name the link itself: the first component of the path that is a symlink
            link, parts = f, f.split("/")
            for i in range(len(root.split("/")) + 1, len(parts) + 1):
                candidate = "/".join(parts[:i])
                if os.path.islink(os.path.join(build_root, candidate)):
                    link = candidate
                    break
            shown = os.path.relpath(real, build_root)
            return f"{link} (resolves to {shown if not shown.startswith('..') else real})"
    return None


@rule(desc="Resolve the vLLM tree of a bundle")
async def vllm_tree(request: VllmTreeRequest, build_root: BuildRoot) -> VllmTree:
    tgt = request.target
    if isinstance(tgt, VllmSdist):
        return await Get(VllmTree, _SdistRequest(tgt[SdistVersionField].value, tgt[SdistSha256Field].value))
    if isinstance(tgt, VllmSourceTree):
        root = tgt[SourceRootField].value.strip("/")
        snapshot = await Get(Snapshot, PathGlobs([f"{root}/{g}" for g in TREE_GLOBS]))
        if f"{root}/LICENSE" not in snapshot.files and not any(f.startswith(f"{root}/vllm/") for f in snapshot.files):
            raise VllmTreeError(
                f"{tgt.address}: the directory `{root}` holds no vLLM tree (no `vllm/`, no LICENSE). "
                f"Remedy: populate it from a pinned sdist, see the README's \"Editing vLLM\" section"
                ", or fix `root`."
            )
        leak = outside_link(build_root.path, root, snapshot.files)
        if leak:
            raise VllmTreeError(
                f"{tgt.address}: the symlink {leak} points outside the tree `{root}`. Remedy: replace the link by "
                "a copy of the file inside the tree, or remove it (links must stay inside `root`)."
            )
        digest = await Get(Digest, RemovePrefix(snapshot.digest, root))
        return VllmTree(digest, f"local tree {root}")
    raise VllmTreeError(
        f"{tgt.address} is a `{tgt.alias}`, not a `vllm_sdist` or `vllm_source_tree`. "
        "Remedy: point the bundle's `vllm` field at one of those."
    )


def rules():
    return collect_rules()
