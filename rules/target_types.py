"""Target types: a bundle of one vLLM symbol, and the two ways to provide the vLLM tree."""

import collections.abc
from typing import Any, Dict, Optional, Union

from pants.engine.addresses import Address
from pants.engine.target import (
    COMMON_TARGET_FIELDS,
    BoolField,
    Field,
    InvalidFieldTypeException,
    MultipleSourcesField,
    StringField,
    StringSequenceField,
    Target,
)
from pants.util.frozendict import FrozenDict
from pants.util.strutil import help_text


class SymbolField(StringField):
    alias = "symbol"
    required = True
    help = "The class or function of the vLLM tree to bundle, e.g. `Qwen3MoeDecoderLayer`."


class SymbolFileHintField(StringField):
    alias = "symbol_file_hint"
    help = help_text(
        """
        A path in the vLLM tree (e.g. `vllm/model_executor/layers/layernorm.py`) that picks one
        definition when several files define `symbol`.
        """
    )


class ModelField(StringField):
    alias = "model"
    help = help_text(
        """
        A model id such as `Qwen/Qwen3-Coder-480B-A35B-Instruct`. Its config is read offline from
        `<[bundler].models_dir>/<org>--<name>/config.json` and sizes `invocation_example()`.
        """
    )


class WorkloadField(StringField):
    alias = "workload"
    valid_choices = ("prefill", "decode")
    help = "`prefill` or `decode`: the workload `invocation_example()` runs. Inferred when absent."


class VllmSourceField(StringField):
    alias = "vllm"
    required = True
    help = help_text(
        """
        Address of the vLLM tree to read: a `vllm_sdist` target (a pinned sdist) or a
        `vllm_source_tree` target (a local directory you edit), e.g. `:vllm_0_26_0`.
        """
    )


class VariantField(Field):
    alias = "variant"
    value: Optional[FrozenDict[str, Union[str, int]]]
    default = None
    help = help_text(
        """
        Variant choices that prune the closure, overriding the defaults (one NVIDIA GPU: platform
        `cuda`, capability 90, dtype `bfloat16`, parallel sizes 1, no quantization, the Triton attention
        and MoE backends, vLLM's CUDA kernels enabled). Values are strings, or integers for
        `cuda_capability` (e.g. `80`, `89`, `90`, `100`; a string of digits is read the same), `tp`/`pp`/`ep`
        (`tp` 1, 2, 4 or 8 on one node; `ep` 1 or `tp`; `pp` 1) and vLLM's FlexAttention knobs
        `flex_attn_block_m`/`_block_n`/`_q_block_size`/`_kv_block_size` (16 to 256, with `attention_backend`
        `FLEX_ATTENTION`). Unknown keys or values are refused before any stage runs, listing the allowed ones.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[Dict[str, Any]], address: Address) -> Optional[FrozenDict]:
        value = super().compute_value(raw_value, address)
        if value is None:
            return None
        if not isinstance(value, collections.abc.Mapping) or not all(
            isinstance(k, str) and isinstance(v, (str, int)) and not isinstance(v, bool) for k, v in value.items()
        ):
            raise InvalidFieldTypeException(
                address, cls.alias, raw_value, expected_type="a dictionary of string -> string or integer"
            )
        return FrozenDict(value)


class OutputPathField(StringField):
    alias = "output_path"
    help = help_text(
        """
        Where the bundle goes, relative to the dist dir (`bundles_out/`): a normalised relative path
        without `..`, ending in a valid module name and `.py`. Defaults to `<symbol>.py`. The stage
        artifacts go to `artifacts/<target's directory, / as .>.<target name>/` beside it. Two targets
        writing the same path are refused before anything is built.
        """
    )


class ImportCheckField(StringField):
    alias = "import_check"
    valid_choices = ("required", "report")
    default = "required"
    help = help_text(
        """
        `required` (strict): stage A7 fails the build, writing nothing, when the bundle does not import in the
        bundle runtime (torch, triton, ninja only) with vLLM blocked, when pyflakes finds a name undefined at
        run time, or when a top-level definition or import is unreachable from the symbol, its example and its
        import-time code; one error line names them. `report`: the bundle is written and the problems are
        recorded in `A7.report.json` (`status: ok_with_failures` for import and undefined-name failures).
        """
    )


class StubOpsField(StringSequenceField):
    alias = "stub_ops"
    help = help_text(
        """
        Compiled ops (fnmatch patterns such as `_C.*quant*`) that may be left out of the bundle when
        their sources cannot be embedded (e.g. they need CUTLASS): each gets a wrapper that raises
        `NotImplementedError` naming the op, and `A5.bindmap.json` lists them. Only for ops the
        target's variant never calls; any other op that cannot be embedded fails stage A4.
        """
    )


class KernelBenchField(BoolField):
    alias = "kernelbench"
    default = False
    help = help_text(
        """
        Also write `<bundle stem>.kernelbench.py` beside the bundle: a KernelBench reference problem (`Model`,
        `get_init_inputs()`, `get_inputs()`) running the layer in its runtime context at the model's shapes, with
        the bundle embedded. Only for decoder layers built with a `model`; published with the bundle, in one step.
        """
    )


class MoeConfigsField(MultipleSourcesField):
    alias = "moe_configs"
    default = ()
    uses_source_roots = False
    help = help_text(
        """
        Tuned fused-MoE configs committed as data of this target (files or globs relative to the BUILD file, e.g.
        `["data/moe-configs/E=128,N=768,device_name=NVIDIA_H100_80GB_HBM3.json"]`), as the bundle's `tune-moe`
        writes them. Each is embedded in vLLM's `fused_moe/configs/` folder of the bundle under its own name, so
        `get_moe_configs` loads it by device name, E and N as vLLM loads its own; one named as a file of vLLM's
        replaces it. A file that is not a vLLM MoE config (name pattern, JSON), an entry matching no file, or a
        config of a shape the target does not look up fails the build, naming it. Editing one rebuilds only the
        targets that name it. `A3.data.json` records each file's path and the vLLM file it replaces.
        """
    )


class MonolithicBundle(Target):
    alias = "monolithic_bundle"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        SymbolField,
        SymbolFileHintField,
        ModelField,
        WorkloadField,
        VllmSourceField,
        VariantField,
        OutputPathField,
        ImportCheckField,
        StubOpsField,
        KernelBenchField,
        MoeConfigsField,
    )
    help = help_text(
        """
        One vLLM symbol as ONE self-contained Python module: its minimal Python closure, the
        Triton kernels and CUDA sources it reaches, and an `invocation_example()`.

        `pants package` runs stages A0 to A7, each a cached process, and writes the bundle plus
        every stage's artifacts under the dist dir.
        """
    )


class SdistVersionField(StringField):
    alias = "version"
    required = True
    help = "The vLLM release, e.g. `0.26.0`."


class SdistSha256Field(StringField):
    alias = "sha256"
    required = True
    help = "The sha256 of `vllm-<version>.tar.gz`; the download is refused when it differs."


class VllmSdist(Target):
    alias = "vllm_sdist"
    core_fields = (*COMMON_TARGET_FIELDS, SdistVersionField, SdistSha256Field)
    help = help_text(
        """
        A pinned vLLM sdist, fetched through the package index pip is configured with, verified
        against `sha256`, extracted and cached by Pants (never downloaded again while the pin holds).
        """
    )


class SourceRootField(StringField):
    alias = "root"
    required = True
    help = help_text(
        """
        A directory inside the workspace, relative to the build root, holding a vLLM tree
        (`vllm/`, `csrc/`, `CMakeLists.txt`, `LICENSE`). Edits to it rebuild what they touch.
        """
    )


class VllmSourceTree(Target):
    alias = "vllm_source_tree"
    core_fields = (*COMMON_TARGET_FIELDS, SourceRootField)
    help = help_text(
        """
        A local vLLM tree that you edit. Populate it from a pinned sdist with
        `./pants run-vllm-checkout` (see the README), then point a `monolithic_bundle` at it.
        """
    )
