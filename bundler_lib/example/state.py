"""A6: vLLM's module-level state in a bundle, and the stand-ins the examples set it to.

A bundle keeps vLLM's module-level state (`_current_vllm_config`, `_forward_context`, the `_TP`/`_EP`/...
groups, the workspace `_manager`) but not the engine that sets it (VllmConfig, set_forward_context,
init_distributed_environment are not reached from a layer). Even an RMSNorm reads the current config when
it is built (CustomOp dispatch). So every example sets that state itself, around its build and forward,
and restores it after: stand-in objects with explicit values for the fields these layers are known to
read, and, for any other field, a logged default (`*_size` 1, `*_rank` 0, `use_*`/`enable_*`/`is_*` False,
`*_config` a nested stand-in, else None). The state's names are looked up in the graph (A1 may rename
them); where the bundle defines a real class (WorkspaceManager, TritonAttentionMetadata, CommonAttentionMetadata,
AttentionBackendEnum, CompilationMode, CUDAGraphMode) the example uses it.
"""

from bundler_lib.example import attention_metadata, config_rules
from bundler_lib.variant import FLEX_KEYS

# (file, name) of the module-level state and classes the example uses, by role (with those of the variant's
# attention backend, attention_metadata.ROLES).
STATE = {
    "vllm_config": ("vllm/config/vllm.py", "_current_vllm_config"),
    "compilation_config_cache": ("vllm/config/vllm.py", "get_cached_compilation_config"),
    "forward_context": ("vllm/forward_context.py", "_forward_context"),
    "workspace": ("vllm/v1/worker/workspace.py", "_manager"),
    "WorkspaceManager": ("vllm/v1/worker/workspace.py", "WorkspaceManager"),
    "AttentionBackendEnum": ("vllm/v1/attention/backends/registry.py", "AttentionBackendEnum"),
    "CompilationMode": ("vllm/config/compilation.py", "CompilationMode"),
    "CUDAGraphMode": ("vllm/config/compilation.py", "CUDAGraphMode"),
    "rope_cache": ("vllm/model_executor/layers/rotary_embedding/__init__.py", "_ROPE_DICT"),
    "QuantizeMethodBase": ("vllm/model_executor/layers/quantization/base_config.py", "QuantizeMethodBase"),
    "Attention": ("vllm/model_executor/layers/attention/attention.py", "Attention"),
    # vLLM patches torch.cuda.set_stream to record the stream here (a module-level side effect a bundle drops)
    "current_stream_tls": ("vllm/utils/torch_utils.py", "_current_stream_tls"),
}
GROUPS = ["_WORLD", "_TP", "_DCP", "_PP", "_DP", "_EP", "_EPLB", "_PCP"]
GROUP_FILE = "vllm/distributed/parallel_state.py"


def emit_names(graph: dict) -> dict[tuple[str, str], str]:
    """(file, original name) -> the name it has in the bundle, for every node of the graph."""
    out: dict[tuple[str, str], str] = {}
    for n in graph.get("python_nodes") or []:
        f = n.get("file")
        for pair in n.get("names") or []:
            if pair.get("name") and pair.get("emit_name"):
                out.setdefault((f, pair["name"]), pair["emit_name"])
        if n.get("name") and n.get("emit_name"):
            out.setdefault((f, n["name"]), n["emit_name"])
    for n in graph.get("triton_kernels") or []:
        if n.get("name") and n.get("emit_name"):
            out.setdefault((n.get("file"), n["name"]), n["emit_name"])
    return out


def roles(graph: dict) -> dict[str, tuple[str, str]]:
    """role -> (file, name): the module state and classes the example of this graph's variant uses."""
    return {**STATE, **attention_metadata.roles(graph.get("variant") or {})}


def resolve(graph: dict) -> tuple[dict, list[str]]:
    names = emit_names(graph)
    wanted = roles(graph)
    found = {role: names.get(key) for role, key in wanted.items()}
    found["groups"] = {g: names.get((GROUP_FILE, g)) for g in GROUPS}
    missing = [f"{f}::{n}" for r, (f, n) in wanted.items() if not found[r]]
    return found, missing



def hf_fields(cfg: dict | None, dims: dict, flags: dict) -> dict:
    """The fields of the model's text config (what vLLM's `hf_text_config` holds)."""
    from bundler_lib.example.model_config import text_config
    if cfg is None:
        fields = {"hidden_size": dims["H"], "num_attention_heads": dims["H_q"], "num_key_value_heads": dims["H_kv"],
                  "head_dim": dims["Dh"], "max_position_embeddings": dims["max_ctx"], "rms_norm_eps": dims["eps"],
                  "intermediate_size": dims.get("intermediate_size", dims.get("I")), "hidden_act": "silu"}
    else:
        tc, _ = text_config(cfg)
        fields = {k: v for k, v in tc.items() if isinstance(k, str) and k.isidentifier()
                  and not k.startswith("_") and k not in ("text_config", "rope_parameters")}
    return fields


def config_methods(cfg: dict | None) -> dict:
    """The text config's `_methods` (tools/gen_model_configs.py `method_values`): name -> {"value": v} or
    {"by_layer": [...]}, the values of its config class's methods."""
    from bundler_lib.example.model_config import text_config
    methods = text_config(cfg)[0].get("_methods") if cfg is not None else None
    return methods if isinstance(methods, dict) else {}


def config_fields(cfg: dict | None, dims: dict, flags: dict) -> tuple[dict, dict, dict]:
    """(hf_fields, derived, per_modality): config_rules' values for the keys the fields lack or leave at None (a
    None field a rule covers is left out of the fields, so the layer reading it gets the derived value, logged), and
    the expert counts read per modality (config_rules.per_modality_counts)."""
    from bundler_lib.example.model_config import modalities, text_config
    fields = hf_fields(cfg, dims, flags)
    rope = flags.get("rope_parameters") or {"rope_type": "default", "rope_theta": 10000.0}
    seen = {**fields, "rope_parameters": rope,
            config_rules.MODALITIES: modalities(cfg, text_config(cfg)[1]) if cfg is not None else 1}
    got = config_rules.derived(seen)
    return ({k: v for k, v in fields.items() if not (v is None and k in got)}, got,
            config_rules.per_modality_counts(seen))


def snippet(graph: dict, cfg: dict | None, dims: dict, flags: dict, config_label: str) -> str:
    """Code (inside invocation_example, after the prelude) that defines the stand-ins and `_install(vllm_config)`,
    which sets the bundle's state and returns a function restoring it; also builds `vllm_config`. `config_label`
    names the config in the error of a layer reading a key it lacks."""
    from bundler_lib.example.templates import py_literal as _py
    found, _ = resolve(graph)
    variant = graph.get("variant") or {}
    custom_ops = "all" if variant.get("custom_ops", "enabled") in ("enabled", "all") else "none"
    fields, derived, per_modality = config_fields(cfg, dims, flags)
    stated = hf_fields(cfg, dims, flags)
    stated_none = sorted(k for k in derived if k not in fields and k in stated and config_rules.is_synonym(k))
    # a synonym the config does not state at all: `getattr(config, key, default)` gets the default, as from the
    # model's config object (whose attribute_map aliases the config lists); `config.key` the synonym's value
    unstated = sorted(k for k in derived if cfg is not None and k not in stated and config_rules.is_synonym(k))
    # a draft model's layer (it reaches vLLM's draft helpers) is built only under a speculative config
    draft = any(f == "vllm/model_executor/models/utils.py" and n.startswith("get_draft") for f, n in emit_names(graph))
    return _SNIPPET.format(names=_py(found), hf_fields=_py(fields), derived=_py(derived), custom_ops=custom_ops,
                           stated_none=_py(stated_none), unstated=_py(unstated),
                           methods=_py(config_methods(cfg)),
                           per_modality=_py(per_modality), per_modality_source=config_rules.PER_MODALITY_SOURCE,
                           config_label=config_label, flag_prefixes=config_rules.FLAG_PREFIXES,
                           flag_suffixes=config_rules.FLAG_SUFFIXES, flag_rule=config_rules.FLAG_RULE,
                           list_field=config_rules.LIST_FIELD_SOURCE,
                           tp=variant.get("tp", 1), expert_parallel=variant.get("ep", 1) > 1,
                           attention_backend=attention_metadata.backend(variant),
                           flex_knobs=", ".join(f"{k}={variant.get(k)!r}" for k in FLEX_KEYS),
                           use_mla=attention_metadata.is_mla(variant),
                           speculative='_StandIn("speculative_config", draft_model_config=None)' if draft else None)


_SNIPPET = '''\
    import collections
    import dis
    import inspect
    import sys
    import types

    G = globals()
    N = {names}  # role -> the name it has in this bundle (None: not in the bundle)
    hf_fields = {hf_fields}
    # key -> [value, rule]: what the config lacks, by the general rules of A6 (bundler_lib/example/config_rules.py)
    derived = {derived}
    # synonyms the config states as None that `derived` answers for `config.key`; `getattr(config, key, default)`
    # gets None
    stated_none = {stated_none}
    unstated = {unstated}  # synonyms the config does not state: a getattr with a default gets the default
    per_modality = {per_modality}  # expert counts read per modality: key -> the number of modalities
    # the config class's methods, as values: name -> {{"value": v}} or {{"by_layer": [v per layer index]}}
    config_methods = {methods}
    config_label = {config_label!r}
    defaults_used = []
    config_assumed = []  # the config keys the layer read that the config lacks, with the value given and why

    def _assumed_text():
        return "; ".join(config_assumed) or "none"

    class _StandIn:
        """A vLLM config/context object: explicit fields, and a logged default for any other."""

        def __init__(self, _path, **fields):
            self.__dict__["_path"] = _path
            self.__dict__.update(fields)

        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            if name.endswith("_config"):
                value = _StandIn(self._path + "." + name)
            elif name.endswith(("_size", "_world_size")):
                value = 1
            elif name.endswith("_rank") or name == "rank":
                value = 0
            elif name.startswith(("use_", "enable_", "is_", "has_", "disable_", "needs_")):
                value = False
            else:
                value = None
            if _read_kind(sys._getframe(1)) == "call":   # a method of the config (is_multimodal_pruning_enabled())
                defaults_used.append(f"{{self._path}}.{{name}}()={{value!r}}")
                return lambda *args, **kwargs: value
            defaults_used.append(f"{{self._path}}.{{name}}={{value!r}}")
            self.__dict__[name] = value
            return value

        def __repr__(self):
            return f"<stand-in {{self._path}}>"

    def _get(role):
        name = N.get(role)
        return G.get(name) if name else None

    def _set(role, value):
        name = N.get(role)
        if name:
            G[name] = value

    class _Step:
        def __init__(self, what):
            self.what = what

        def __enter__(self):
            return self

        def __exit__(self, et, ev, tb):
            if ev is None or getattr(ev, "_a6_step", False) or isinstance(ev, NotImplementedError):
                return False
            import traceback
            shown = "; ".join(defaults_used[-25:]) or "none"
            frames = traceback.extract_tb(tb)
            where = f" (in {{frames[-1].name}}, line {{frames[-1].lineno}}: {{frames[-1].line}})" if frames else ""
            err = RuntimeError(f"invocation_example: {{self.what}} failed: {{type(ev).__name__}}: {{ev}}{{where}}. "
                               f"Stand-in config defaults used so far: {{shown}}. "
                               f"Config values assumed: {{_assumed_text()}}")
            err._a6_step = True
            raise err from ev

    H, H_q, H_kv, Dh, max_ctx = dims["H"], dims["H_q"], dims["H_kv"], dims["Dh"], dims["max_ctx"]
    moe = flags.get("moe") or {{}}
    block_size = 16

    # 1. The model's config as vLLM sees it (hf_text_config), and the engine configs around it.
    def _lacks(path, called=False):
        if called:
            what = (f"calls config.{{path}}(...), a method of the model's config class, whose values "
                    f"{{config_label}} does not record (`_methods`: tools/gen_model_configs.py records a method "
                    "taking no argument or a layer index) and no rule answers: build the bundle with a model whose "
                    "config class defines it (the target's `model`)")
        else:
            what = (f"reads config.{{path}}, which {{config_label}} lacks and no derivation rule supplies: build "
                    "the bundle with a model that has it (the target's `model`)")
        err = AttributeError(f"invocation_example: the layer {{what}}. Config values assumed so far: "
                             f"{{_assumed_text()}}")
        err._a6_step = True
        return err

    def _read_kind(frame):
        """How the reader's current instruction reads the key: "call" for `config.key(...)` (a method of the
        model's config class), "read" for `config.key`, None for `getattr(config, key, default)` or `hasattr`,
        which keep their own default (`getattr(config, "is_causal", True)`)."""
        code = frame.f_code.co_code
        op = dis.opname[code[frame.f_lasti]]
        # a method call loads the attribute with LOAD_METHOD (Python 3.11) or LOAD_ATTR with its low bit set (3.12+)
        if op == "LOAD_METHOD" or (op == "LOAD_ATTR" and sys.version_info >= (3, 12) and code[frame.f_lasti + 1] & 1):
            return "call"
        return "read" if op == "LOAD_ATTR" else None

    def _assume(path, name, reader):
        """The value of a key the config lacks, by the rules (`derived`; a use_*/is_*/*_bias flag read directly
        is False; a key the config states as None, read by getattr with a default, None: Cohere2Moe's
        `getattr(config, "rms_norm_eps", None)` picks LayerNorm), logged in `config_assumed` and printed; another key
        stops the example with one line naming it."""
        how = _read_kind(reader)
        if how == "call":
            raise _lacks(path, called=True)
        if name in stated_none and how is None:
            value, rule = None, "the config states None: a getattr with a default tests whether the model sets it"
        elif name in unstated and how is None:
            raise _lacks(path)   # getattr(config, key, default) gives its default: the model does not set the key
        elif name in derived:
            value, rule = derived[name]
        elif (name.startswith({flag_prefixes!r}) or name.endswith({flag_suffixes!r})) and how == "read":
            value, rule = False, {flag_rule!r}
        else:
            raise _lacks(path)
        value = _nested(path, value)
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        config_assumed.append(f"config.{{path}}={{shown}} ({{rule}})")
        print(f"invocation_example: assumed config.{{path}}={{shown}}: {{rule}}", file=sys.stderr)
        return value

    class _SubConfig(dict):
        """A nested sub-config (a dict in config.json), read as a mapping or by attribute; a key it lacks by
        attribute takes the top-level rules (a field moved out of it: Dbrx's attn_config.rope_theta)."""

        def __init__(self, path, items):
            super().__init__((k, _nested(f"{{path}}.{{k}}", v)) for k, v in items.items())
            self.__dict__["_path"] = path

        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            if name not in self:
                self.__dict__[name] = _assume(f"{{self._path}}.{{name}}", name, sys._getframe(1))
                return self.__dict__[name]
            return self[name]

{list_field}{per_modality_source}    class _PerLayerConfig:
        """transformers' heterogeneous config: `per_layer_config` holds the fields each listed layer overrides, keyed
        by its index (as text in config.json); `[i]` is the config with layer i's overrides (a layer type: that of
        its first layer), as transformers' per-layer view gives it (vLLM 0.33.0's Gemma4 reads its head_dim)."""

        def __init__(self, overrides):
            self._overrides = {{int(k): v for k, v in overrides.items()}}

        def __len__(self):
            return hf.num_hidden_layers

        def __iter__(self):
            return (self[i] for i in range(len(self)))

        def __getitem__(self, i):
            if isinstance(i, str):
                i = list(hf.layer_types).index(i)
            if not 0 <= i < len(self):
                raise IndexError(f"config.per_layer_config[{{i}}]: the config has {{len(self)}} layers")
            layer = type(hf).__new__(type(hf))
            layer.__dict__.update(hf.__dict__)
            layer.__dict__.update({{k: _nested(f"per_layer_config[{{i}}].{{k}}", v)
                                    for k, v in self._overrides.get(i, {{}}).items()}})
            return layer

    def _nested(path, value):
        if path in per_modality:
            return _PerModality(path, value, per_modality[path])
        if path == "per_layer_config" and isinstance(value, dict):
            return _PerLayerConfig(value)
        if isinstance(value, list):
            return _ListField(path, value)
        return _SubConfig(path, value) if isinstance(value, dict) else value

    class _ModelConfig(types.SimpleNamespace):
        """hf_text_config: the config's fields; a key it lacks takes `_assume`'s value (`getattr(config, key,
        default)` and `hasattr` see a key no rule covers as absent)."""

        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            self.__dict__[name] = _assume(name, name, sys._getframe(1))
            return self.__dict__[name]

    def _config_class():
        """The model's config class the bundle defines or imports (by the model_type it declares), or None. Never
        transformers' own: the example runs the same with torch, triton and ninja alone (the properties of
        transformers' classes are values in the model's config.json, tools/gen_model_configs.py)."""
        mt = hf_fields.get("model_type")
        if not mt:
            return None
        for v in list(G.values()):
            if (isinstance(v, type) and v.__dict__.get("model_type") == mt
                    and any(b.__name__ in ("PretrainedConfig", "PreTrainedConfig") for b in v.__mro__[1:])):
                return v
        return None

    def _typed(cls):
        """The stand-in as a subclass of the model's config class, so that the layer's `isinstance(config,
        XConfig)` holds and the class's properties answer (Falcon's `rotary`); else the plain stand-in. A derived
        key the class has as a plain class-level default (a dataclass field) still takes the derivation rule."""
        v = _config_class()
        if v is None:
            return cls
        shadow = {{k: property(lambda self, k=k: self.__dict__[k] if k in self.__dict__ else self.__getattr__(k))
                  for k in derived if hasattr(v, k) and not isinstance(inspect.getattr_static(v, k), property)}}
        return type(v.__name__, (cls, v), {{"__module__": v.__module__, **shadow}})

    def _method(name, entry):
        """config.<name>(...) answered from the values the config class's method gave (`config_methods`)."""
        if "value" in entry:
            return lambda: entry["value"]
        values = entry["by_layer"]

        def by_layer(i):
            if not (isinstance(i, int) and 0 <= i < len(values)):
                err = ValueError(f"invocation_example: config.{{name}}({{i!r}}): {{config_label}} records its values "
                                 f"for layer indices 0..{{len(values) - 1}} only (`_methods`)")
                err._a6_step = True
                raise err
            return values[i]
        return by_layer

    # the fields as given: the config class's own __init__ (defaults, validation) is not run
    hf_cls = _typed(_ModelConfig)
    hf = hf_cls.__new__(hf_cls)
    hf.__dict__.update({{k: _nested(k, v) for k, v in hf_fields.items()}})
    hf.__dict__.update({{k: _method(k, e) for k, e in config_methods.items()}})
    hf.rope_parameters = dict(flags.get("rope_parameters") or {{"rope_type": "default", "rope_theta": 10000.0}})
    hf.get_text_config = lambda *a, **k: hf
    enum_backend = _get("AttentionBackendEnum")
    mode_enum = _get("CompilationMode")
    graph_enum = _get("CUDAGraphMode")
    model_config = _StandIn(
        "model_config", hf_config=hf, hf_text_config=hf, dtype=dtype, max_model_len=max_ctx,
        is_mm_prefix_lm=False, rswa_window=None, use_mla={use_mla}, is_hybrid=False, quantization=None,
        quantization_config=None, enforce_eager=True, architecture=(flags.get("architectures") or [None])[0],
        get_num_attention_heads=lambda *a: H_q, get_num_kv_heads=lambda *a: H_kv, get_head_size=lambda: Dh,
        get_hidden_size=lambda: H, get_vocab_size=lambda: dims.get("vocab_size"),
        get_num_layers=lambda *a: dims.get("num_layers"), get_sliding_window=lambda: flags.get("sliding_window"),
        # vLLM's ModelConfig.get_mamba_chunk_size: mamba_chunk_size, else chunk_size, else 2048 (Mamba1 has none)
        get_mamba_chunk_size=lambda: getattr(hf, "mamba_chunk_size", None) or getattr(hf, "chunk_size", None) or 2048)
    compilation_config = _StandIn(
        "compilation_config", custom_ops=[{custom_ops!r}], enabled_custom_ops=collections.Counter(),
        disabled_custom_ops=collections.Counter(), static_forward_context={{}}, static_all_moe_layers=[],
        mode=(mode_enum.NONE if mode_enum is not None else 0), backend="eager",
        cudagraph_mode=(graph_enum.NONE if graph_enum is not None else None), cudagraph_capture_sizes=[],
        max_cudagraph_capture_size=0, fast_moe_cold_start=False)
    def _replaceable(_path, **fields):
        """A stand-in that `dataclasses.replace(config, key=value)` copies with its explicit fields, as it copies
        the vLLM config dataclass it stands for (a layer's per-loop cache_config with its own sliding window)."""
        import dataclasses

        def init(self, **kw):
            _StandIn.__init__(self, _path, **kw)

        cls = dataclasses.make_dataclass("_StandIn_" + _path, list(fields), bases=(_StandIn,), init=False,
                                         repr=False, eq=False, namespace={{"__init__": init}})
        return cls(**fields)

    cache_config = _replaceable(
        "cache_config", block_size=block_size, user_specified_block_size=True, cache_dtype="auto",
        calculate_kv_scales=False, kv_cache_dtype_skip_layers=[], enable_prefix_caching=False,
        sliding_window=flags.get("sliding_window"), skip_page_size_padded=None, num_blocks=None,
        mamba_cache_dtype="auto", mamba_ssm_cache_dtype="auto", mamba_cache_mode="none",
        mamba_block_size=max_ctx)  # vLLM's rule without prefix caching (model_executor/models/config.py)
    parallel_config = _StandIn(
        "parallel_config", tensor_parallel_size={tp}, pipeline_parallel_size=1, data_parallel_size=1,
        data_parallel_rank=0, prefill_context_parallel_size=1, decode_context_parallel_size=1,
        enable_expert_parallel={expert_parallel}, enable_eplb=False, use_sequence_parallel_moe=False, enable_dbo=False,
        expert_placement_strategy="linear", all2all_backend="allgather_reducescatter", worker_cls="auto",
        cp_kv_cache_interleave_size=1, dcp_kv_cache_interleave_size=1, dcp_comm_backend="ag_rs",
        is_moe_model=bool(moe), eplb_config=_StandIn("parallel_config.eplb_config", num_redundant_experts=0))
    attention_config = _StandIn(
        "attention_config", backend=(enum_backend[{attention_backend!r}] if enum_backend is not None
                                     else {attention_backend!r}),
        use_non_causal=False, {flex_knobs}, use_prefill_query_quantization=False)
    vllm_config = _StandIn(
        "vllm_config", model_config=model_config, cache_config=cache_config, parallel_config=parallel_config,
        compilation_config=compilation_config, attention_config=attention_config, quant_config=None,
        lora_config=None, kv_transfer_config=None, speculative_config={speculative}, num_speculative_tokens=0,
        device_config=_StandIn("device_config", device=device),
        kernel_config=_StandIn("kernel_config", moe_backend="triton", linear_backend="auto", ir_op_priority=None),
        scheduler_config=_StandIn("scheduler_config", max_num_seqs=256, max_num_batched_tokens=32768,
                                  is_multimodal_model=False, disable_chunked_mm_input=False))

    # 2. A single-process parallel state: every group has one rank; collectives are identities.
    class _ProcessGroup:
        def size(self):
            return 1

        def rank(self):
            return 0

    def _identity(x, *a, **k):
        return x

    def _group(name):
        return _StandIn(
            "group " + name, world_size=1, rank=0, rank_in_group=0, local_rank=0, ranks=[0],
            device=device, device_group=_ProcessGroup(), cpu_group=_ProcessGroup(), unique_name=name,
            device_communicator=None, all_reduce=_identity, all_gather=_identity, reduce_scatter=_identity,
            broadcast=_identity, gather=_identity, is_first_rank=True, is_last_rank=True)

    def _install(vllm_config):
        """Set the bundle's vLLM state for this example; return the function that restores it."""
        saved = {{r: _get(r) for r in ("vllm_config", "forward_context", "workspace")}}
        # the stream vLLM's patched torch.cuda.set_stream records (vllm/utils/torch_utils.py current_stream)
        tls = _get("current_stream_tls")
        saved_stream = getattr(tls, "value", None)
        if tls is not None and device.type == "cuda" and saved_stream is None:
            tls.value = torch.cuda.current_stream(device)
        saved_groups = {{g: G.get(n) for g, n in N["groups"].items() if n}}
        for g, n in N["groups"].items():
            if n and G.get(n) is None:
                G[n] = _group(g)
        _set("vllm_config", vllm_config)
        cache = _get("compilation_config_cache")
        if cache is not None and hasattr(cache, "cache_clear"):
            cache.cache_clear()
        rope_cache = _get("rope_cache")
        if isinstance(rope_cache, dict):
            rope_cache.clear()
        wm = _get("WorkspaceManager")
        if N.get("workspace") and wm is not None and device.type == "cuda":
            _set("workspace", wm(device))

        def restore():
            for r, v in saved.items():
                _set(r, v)
            for g, v in saved_groups.items():
                G[N["groups"][g]] = v
            if cache is not None and hasattr(cache, "cache_clear"):
                cache.cache_clear()
            if tls is not None:
                tls.value = saved_stream

        return restore

'''
