"""Stages A0 to A7, each one cached Pants process over exactly the inputs it reads.

Every stage runs `python -m bundler_lib <stage> ... --out out` in a sandbox laid out as
`tree/` (the part of the vLLM tree it reads), `in/` (earlier stages' artifacts it reads),
`model/` (A6 only) and `bundler_lib/`. Its artifacts are the files it writes to `out/`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pants.engine.fs import EMPTY_DIGEST, AddPrefix, Digest, DigestContents, DigestSubset, MergeDigests, PathGlobs, RemovePrefix
from pants.engine.process import FallibleProcessResult
from pants.engine.rules import Get, collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from rules.toolchain import RUNTIME_DIR, StageToolchain

STAGE_NAMES = {
    "A0": "license",
    "A1": "graph",
    "A2": "collect-python",
    "A3": "collect-triton",
    "A4": "collect-cuda",
    "A5": "bind",
    "A6": "example",
    "A7": "package",
}


# A1's memo reuses a graph while nothing it read has changed: its output is still a function of its inputs
A1_MEMO_CACHE = "bundler_graph_memo"
A1_MEMO_DIR = ".a1_memo"


class StageFailed(Exception):
    pass


@dataclass(frozen=True)
class StageRequest:
    stage: str  # "A0" ... "A7"
    args: tuple[str, ...]
    input_digest: Digest  # tree/, in/, model/ as the stage reads them
    target: str  # the bundle target's address, for messages
    memo: bool = False  # A1: an append-only cache of what earlier runs read (bundler_lib/graph/memo.py)
    runtime: bool = False  # A7: the bundle runtime venv (a named cache, so its name is in the cache key)


@dataclass(frozen=True)
class StageOutput:
    stage: str
    digest: Digest  # the stage's artifacts, at the root


@rule(desc="Run a bundler stage", level=LogLevel.DEBUG)
async def run_stage(request: StageRequest, toolchain: StageToolchain) -> StageOutput:
    name = STAGE_NAMES[request.stage]
    input_digest = await Get(Digest, MergeDigests([toolchain.sources_for(name), request.input_digest]))
    extra: dict = {}
    args = request.args
    if request.memo:
        extra = dict(extra_caches=FrozenDict({A1_MEMO_CACHE: A1_MEMO_DIR}),
                     extra_env=FrozenDict({"VLLM_BUNDLER_A1_MEMO": A1_MEMO_DIR}))
    elif request.runtime:
        extra = dict(extra_caches=FrozenDict({toolchain.runtime: RUNTIME_DIR}),
                     extra_env=FrozenDict({"BUNDLER_RUNTIME": toolchain.runtime,
                                           "BUNDLER_RUNTIME_PACKAGES": toolchain.runtime_packages}))
        args = (*args, "--runtime-python", f"{RUNTIME_DIR}/bin/python")
    result = await Get(
        FallibleProcessResult,
        toolchain.process(
            (name, *args, "--out", "out"),
            description=f"{request.stage} {name}: {request.target}",
            input_digest=input_digest,
            **extra,
        ),
    )
    if result.exit_code != 0:
        message = last_error(result.stderr)
        raise StageFailed(f"Stage {request.stage} ({name}) failed for {request.target}:\n{message}")
    return StageOutput(request.stage, await Get(Digest, RemovePrefix(result.output_digest, "out")))


def last_error(stderr: bytes) -> str:
    """The stage's one-line `error: ...` when it wrote one, else the tail of its stderr."""
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    return errors[-1] if errors else "\n".join(lines[-30:])


async def tree_subset(tree: Digest, globs: list[str]) -> Digest:
    """The files of the tree matching `globs`, under `tree/` as the stages expect them."""
    if not globs:
        return EMPTY_DIGEST
    subset = await Get(Digest, DigestSubset(tree, PathGlobs(globs)))
    return await Get(Digest, AddPrefix(subset, "tree"))


async def as_inputs(*outputs: StageOutput) -> Digest:
    merged = await Get(Digest, MergeDigests(o.digest for o in outputs))
    return await Get(Digest, AddPrefix(merged, "in"))


async def read_json(output: StageOutput, name: str) -> dict:
    contents = await Get(DigestContents, DigestSubset(output.digest, PathGlobs([name])))
    if not contents:
        raise StageFailed(f"Stage {output.stage} wrote no {name}")
    return json.loads(contents[0].content)


def rules():
    return collect_rules()
