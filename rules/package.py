"""Build a `monolithic_bundle`: A0 to A7 in dependency order, then the bundle and its artifacts as one digest
(rules/write_out.py puts it into the dist dir).

    A0 license ─────────────────────────────────────────────┐
    A1 graph (+ model config) ─┬─ A2 python ─┐              ├─ A7 package
              ├─ A3 triton ─┼─ A5 bind ─────────────────────┤
              ├─ A4 cuda ───┘                               │
              └─ A6 example (+ model config) ───────────────┘

A3 is two processes when the closure has a file that names `__file__`: the data scan (the graph, those
files, the model config) finds what the reached code reads next to its module and which files the target
can select; the collection then reads the Triton files and exactly the data files the scan's globs match, and the
target's own `moe_configs` files (checked here first), which it embeds beside vLLM's fused-MoE configs.

With `kernelbench=True` the built bundle and A6.model.json also give `<bundle stem>.kernelbench.py`
(bundler_lib/example/kernelbench.py), generated and checked here, in the rule, and published with the bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from pants.core.goals.package import PackageFieldSet
from pants.engine.addresses import Address
from pants.engine.fs import (
    EMPTY_DIGEST,
    AddPrefix,
    CreateDigest,
    Digest,
    DigestContents,
    DigestSubset,
    FileContent,
    MergeDigests,
    PathGlobs,
    Snapshot,
)
from pants.engine.internals.native_engine import AddressInput
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import WrappedTarget, WrappedTargetRequest
from pants.engine.unions import UnionRule
from pants.option.global_options import UnmatchedBuildFileGlobs
from pants.util.logging import LogLevel

from bundler_lib import model_facts, variant as variants
from bundler_lib.common.contract import parse_graph
from bundler_lib.common.moe_configs import check_moe_config
from bundler_lib.errors import StageError
from bundler_lib.example import config_class, kernelbench
from rules.outputs import BundleTargetError, bundle_layout
from rules.stages import StageFailed, StageOutput, StageRequest, as_inputs, read_json, tree_subset
from rules.subsystem import BundlerSubsystem
from rules.target_types import (
    ImportCheckField,
    KernelBenchField,
    ModelField,
    MoeConfigsField,
    StubOpsField,
    OutputPathField,
    SymbolField,
    SymbolFileHintField,
    VariantField,
    VllmSourceField,
    WorkloadField,
)
from rules.vllm_tree import VllmTree, VllmTreeRequest


@dataclass(frozen=True)
class BuiltBundle:
    """A bundle built by A0..A7: `digest` holds `bundle_path`, the stage artifacts under `artifacts_dir` and
    `kernelbench_path` when set (all relative to the dist dir); rules/write_out.py keeps the builds in
    `store_dir`."""

    digest: Digest
    bundle_path: str
    artifacts_dir: str
    store_dir: str
    size: int
    sha256: str
    kernelbench_path: str | None = None


class ModelConfigMissing(Exception):
    pass


@dataclass(frozen=True)
class MonolithicBundleFieldSet(PackageFieldSet):
    required_fields = (SymbolField, VllmSourceField)

    symbol: SymbolField
    symbol_file_hint: SymbolFileHintField
    model: ModelField
    workload: WorkloadField
    vllm: VllmSourceField
    variant: VariantField
    output_path: OutputPathField
    import_check: ImportCheckField
    stub_ops: StubOpsField
    kernelbench: KernelBenchField
    moe_configs: MoeConfigsField


async def _model_config(model: str | None, models_dir: str, address: Address) -> Digest:
    if not model:
        return EMPTY_DIGEST
    path = f"{models_dir}/{model.replace('/', '--')}/config.json"
    contents = await Get(DigestContents, PathGlobs([path]))
    if not contents:
        raise ModelConfigMissing(
            f"[A6 example] {address}: no config for model `{model}` at `{path}`. Remedy: copy the model's "
            f"config.json there (the hub is not reached), or fix the `model` field."
        )
    try:  # checked here, naming the workspace file, before a stage reads it as model/config.json
        model_facts.parse(contents[0].content, path)
    except StageError as e:
        raise BundleTargetError(f"{address}: `model` {model!r}: {e.input}: {e.problem}. Remedy: {e.remedy}") from None
    return await Get(Digest, CreateDigest([FileContent("model/config.json", contents[0].content)]))


MOE_CONFIGS_DIR = "moe_configs"  # where the A3 collection finds the target's tuned fused-MoE configs


async def _moe_configs(field: MoeConfigsField, address: Address) -> Digest:
    """The target's tuned fused-MoE configs at their workspace paths under `moe_configs/`, or empty. Checked here,
    before any stage runs: each entry matches a file, each file is a vLLM MoE config (A3 then checks its shape)."""
    if not field.globs:
        return EMPTY_DIGEST
    includes = [g for g in field.globs if not g.startswith("!")]
    matched = await MultiGet(
        Get(Snapshot, PathGlobs([field.prefix_glob_with_dirpath(address.spec_path, g)])) for g in includes
    )
    for glob, snapshot in zip(includes, matched):
        if not snapshot.files:
            raise BundleTargetError(
                f"{address}: `moe_configs` {glob!r} matches no file under {address.spec_path or '.'}/. Remedy: "
                "commit the tuned config there (`tune-moe` writes it), or fix the entry."
            )
    digest = await Get(Digest, PathGlobs, field.path_globs(UnmatchedBuildFileGlobs.ignore()))
    for fc in await Get(DigestContents, Digest, digest):
        try:
            check_moe_config(fc.path, fc.content)
        except StageError as e:
            raise BundleTargetError(f"{address}: `moe_configs` {e.input}: {e.problem}. Remedy: {e.remedy}") from None
    return await Get(Digest, AddPrefix(digest, MOE_CONFIGS_DIR))


@dataclass(frozen=True)
class TritonStageRequest:
    tree: Digest  # the whole vLLM tree
    graph_in: Digest  # in/A1.graph.json
    python_files: Digest  # the closure's Python files, under tree/
    triton_files: tuple[str, ...]
    model_config: Digest  # model/config.json, or empty
    has_model: bool
    target: str
    moe_configs: Digest  # the target's tuned fused-MoE configs under moe_configs/, or empty


@dataclass(frozen=True)
class TritonStageOutput:
    collect: StageOutput  # A3.triton.py, A3.manifest.json, A3.data.py, A3.data.json
    scan: StageOutput | None  # A3.data_reads.json, when some file of the closure names __file__


@rule(desc="Collect the Triton kernels and the data files of a bundle", level=LogLevel.DEBUG)
async def collect_triton_stage(request: TritonStageRequest) -> TritonStageOutput:
    collect_args: tuple[str, ...] = ("--tree", "tree", "--graph", "in/A1.graph.json")
    contents = await Get(DigestContents, Digest, request.python_files)
    # Only a file that names __file__ can read data next to its module: the scan reads just those, so an
    # edit elsewhere in the closure does not re-run it.
    readers = sorted(fc.path[len("tree/"):] for fc in contents if b"__file__" in fc.content)
    tr_tree = await tree_subset(request.tree, list(request.triton_files))
    scan = None
    data_in = EMPTY_DIGEST
    if readers:
        scan_in = await Get(
            Digest, MergeDigests([request.graph_in, await tree_subset(request.tree, readers), request.model_config])
        )
        scan_args = collect_args + ("--scan-data-reads",)
        if request.has_model:
            scan_args += ("--model-config", "model/config.json")
        scan = await Get(StageOutput, StageRequest("A3", scan_args, scan_in, request.target))
        reads = await read_json(scan, "A3.data_reads.json")
        # exactly the data files the target can select: an edit to any other file leaves A3 cached
        data_tree = await tree_subset(request.tree, list(reads.get("globs", [])))
        data_in = await Get(Digest, MergeDigests([data_tree, await as_inputs(scan)]))
        collect_args += ("--data-reads", "in/A3.data_reads.json")
    if request.moe_configs != EMPTY_DIGEST:
        collect_args += ("--moe-configs", MOE_CONFIGS_DIR)
    a3_in = await Get(Digest, MergeDigests([request.graph_in, tr_tree, data_in, request.moe_configs]))
    collect = await Get(StageOutput, StageRequest("A3", collect_args, a3_in, request.target))
    return TritonStageOutput(collect, scan)


def _variant(field_set: MonolithicBundleFieldSet) -> dict:
    """The target's variant with integer values as integers ("80" -> 80), refused here when A1 would refuse it."""
    given = dict(field_set.variant.value or {})
    try:
        variants.resolve({k: given[k] for k in given})
        return {k: variants.normalise(k, v) for k, v in given.items()}
    except StageError as e:
        raise BundleTargetError(
            f"{field_set.address}: `variant` {e.input.replace('variant ', '', 1)}: {e.problem}. Remedy: {e.remedy}"
        ) from None


@rule(desc="Build a monolithic bundle")
async def build_bundle(field_set: MonolithicBundleFieldSet, bundler: BundlerSubsystem) -> BuiltBundle:
    address = field_set.address
    target = str(address)
    symbol = field_set.symbol.value
    # Checked before any stage runs: where it writes, and the variant.
    layout = bundle_layout(address, symbol, field_set.output_path.value, bool(field_set.kernelbench.value))
    variant = _variant(field_set)
    if layout.kernelbench_path and not field_set.model.value:
        raise BundleTargetError(f"{address}: `kernelbench=True` needs `model`: the problem runs the layer at a model's "
                                "shapes. Remedy: set `model`, or remove `kernelbench`.")
    source_address = await Get(
        Address,
        AddressInput,
        AddressInput.parse(
            field_set.vllm.value,
            relative_to=address.spec_path,
            description_of_origin=f"the `vllm` field of {address}",
        ),
    )
    source_target = await Get(
        WrappedTarget, WrappedTargetRequest(source_address, description_of_origin=f"the `vllm` field of {address}")
    )
    tree = (await Get(VllmTree, VllmTreeRequest(source_target.target))).digest

    # A0 reads the tree's license files; A1 its Python files and the model config (whose values decide
    # branches).
    model_cfg = await _model_config(field_set.model.value, bundler.models_dir, address)
    moe_configs = await _moe_configs(field_set.moe_configs, address)
    a1_args = ["--tree", "tree", "--symbol", symbol,
               "--variant", json.dumps(variant, sort_keys=True)]
    if field_set.symbol_file_hint.value:
        a1_args += ["--hint", field_set.symbol_file_hint.value]
    if field_set.model.value:
        a1_args += ["--model-config", "model/config.json"]
    # A0 also reads the torch and Python versions the tree targets (bundler_lib/runtime_deps.py)
    a0_in = await tree_subset(tree, ["LICENSE*", "NOTICE*", "COPYING*",
                                     "CMakeLists.txt", "pyproject.toml", "requirements/cuda.txt"])
    a1_in = await Get(Digest, MergeDigests([await tree_subset(tree, ["vllm/**/*.py"]), model_cfg]))
    a0, a1 = await MultiGet(
        Get(StageOutput, StageRequest("A0", ("--tree", "tree"), a0_in, target)),
        Get(StageOutput, StageRequest("A1", tuple(a1_args), a1_in, target, memo=True)),
    )

    # A2, A3, A4, A6 read A1's graph and only the files it names (or csrc, or the model config).
    try:  # the one loader of the stage contract (bundler_lib/common/contract.py)
        graph = parse_graph(await read_json(a1, "A1.graph.json"), "A1 graph")
    except StageError as e:
        raise StageFailed(f"{target}: {e}") from None
    graph_in = await as_inputs(a1)
    python_files = sorted(set(graph.get("files", [])))
    triton_files = sorted({k["file"] for k in graph.get("triton_kernels", [])})
    py_tree = await tree_subset(tree, python_files)
    cu_tree = await tree_subset(tree, ["csrc/**", "cmake/**", "CMakeLists.txt"])
    # A6 reads the config classes (vLLM's registry, or the layer's own module): an edit elsewhere does not re-run it
    def_file = graph.get("def_file")
    config_tree = await tree_subset(tree, [def_file] * isinstance(def_file, str) + list(config_class.TREE_GLOBS))
    a2_in, a4_in, a6_in = await MultiGet(
        Get(Digest, MergeDigests([graph_in, py_tree])),
        Get(Digest, MergeDigests([graph_in, cu_tree])),
        Get(Digest, MergeDigests([graph_in, model_cfg, config_tree])),
    )
    collect_args = ("--tree", "tree", "--graph", "in/A1.graph.json")
    stub_args = tuple(a for pattern in field_set.stub_ops.value or () for a in ("--stub-op", pattern))
    a6_args = ["--graph", "in/A1.graph.json", "--tree", "tree"]
    if field_set.model.value:
        a6_args += ["--model", field_set.model.value, "--model-config", "model/config.json"]
    if field_set.workload.value:
        a6_args += ["--workload", field_set.workload.value]
    a3_request = TritonStageRequest(tree, graph_in, py_tree, tuple(triton_files), model_cfg,
                                    bool(field_set.model.value), target, moe_configs)
    a2, a3_out, a4, a6 = await MultiGet(
        Get(StageOutput, StageRequest("A2", collect_args, a2_in, target)),
        Get(TritonStageOutput, TritonStageRequest, a3_request),
        Get(StageOutput, StageRequest("A4", collect_args + stub_args, a4_in, target)),
        Get(StageOutput, StageRequest("A6", tuple(a6_args), a6_in, target)),
    )
    a3 = a3_out.collect

    a5 = await Get(StageOutput, StageRequest("A5", ("--inputs", "in"), await as_inputs(a1, a2, a3, a4), target))

    output_path = layout.bundle_path
    bundle_name = os.path.basename(output_path)
    a7_in = await as_inputs(a0, a1, a5, a6)
    a7 = await Get(
        StageOutput,
        StageRequest(
            "A7",
            ("--inputs", "in", "--bundle-name", bundle_name, "--import-check", field_set.import_check.value),
            a7_in,
            target,
            runtime=True,
        ),
    )

    # The bundle at output_path; every stage's artifacts under artifacts/<address>/ beside it.
    bundle_digest = await Get(Digest, DigestSubset(a7.digest, PathGlobs([bundle_name])))
    bundle_contents = await Get(DigestContents, Digest, bundle_digest)
    if not bundle_contents:
        raise StageFailed(f"Stage A7 wrote no {bundle_name} for {target}")
    data = bundle_contents[0].content
    out_dir = os.path.dirname(output_path)
    bundle_digest = await Get(Digest, AddPrefix(bundle_digest, out_dir)) if out_dir else bundle_digest
    a3_scan = [a3_out.scan.digest] if a3_out.scan else []
    stage_artifacts = await Get(
        Digest,
        MergeDigests([a0.digest, a1.digest, a2.digest, a3.digest, *a3_scan, a4.digest, a5.digest, a6.digest, a7.digest]),
    )
    stage_artifacts = await Get(Digest, DigestSubset(stage_artifacts, PathGlobs(["A*"])))
    artifacts_dir = layout.artifacts_dir
    stage_artifacts = await Get(Digest, AddPrefix(stage_artifacts, artifacts_dir))
    outputs = [bundle_digest, stage_artifacts]
    if layout.kernelbench_path:
        try:
            source = kernelbench.generate(data, bundle_name, await read_json(a6, "A6.model.json"))
            kernelbench.check(source, data, layout.kernelbench_path)
        except StageError as e:
            raise StageFailed(f"{target}: {e}") from None
        outputs.append(await Get(Digest, CreateDigest([FileContent(layout.kernelbench_path, source.encode())])))
    digest = await Get(Digest, MergeDigests(outputs))

    return BuiltBundle(digest, output_path, artifacts_dir, layout.store_dir, len(data), hashlib.sha256(data).hexdigest(),
                       layout.kernelbench_path)


def rules():
    return [*collect_rules(), UnionRule(PackageFieldSet, MonolithicBundleFieldSet)]
