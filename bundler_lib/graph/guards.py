"""Guard predicates: evaluate branch conditions that the variant decides.

`GuardEval(variant, oracle).evaluate(expr, where)` returns (value, atoms): value is True/False when the whole
test is decided by the variant, None otherwise; atoms are the decided sub-expressions [(expr, value)]. `where`
(Where) says what is known of the code around the expression; `oracle` (Oracle) answers what needs the graph.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field, replace
from typing import Mapping

from bundler_lib.variant import parallel_sizes, platform_predicates

from . import capability

# Expert parallelism: `use_ep` is on when the variant's ep > 1. The all-to-all switches (all-to-all kernels, DeepEP,
# pplx, ...) need data or sequence parallelism besides (vLLM's use_all2all_kernels = use_ep and (dp, pcp or sp > 1)):
# off with dp 1 and sequence-parallel MoE off, as the variant has them. EPLB (expert-parallel load balancing) is not
# offered: off, and `eplb_state` (an EplbLayerState / EplbState only made when EPLB is on) is None.
_EP_ON = "use_ep"
_EP_FLAG = re.compile(r"^(use_all2all\w*|use_\w*(deepep|pplx|nixl_ep|mori|all2all)\w*|"
                      r"use_sequence_parallel_moe|is_sequence_parallel|use_dp_chunking|enable_eplb)$")
_NONE_WITHOUT_EPLB = {"eplb_state"}

# Names that hold the model's QuantizationConfig (None when quantization is off). Other *_quant_config
# names (moe_quant_config, ...) hold objects that exist even unquantized: never decided.
_QUANT_CONFIG_NAMES = {"quant_config", "hf_quant_config"}

# Quantization switches and values that an unquantized layer has off / None.
_QUANT_FLAG = re.compile(r"^(use_(fp8|int8|int4|nvfp4|mxfp4|mxfp6|mxfp8|fp4)_\w+|use_\w+_w\d+a\d+)$")
_NONE_WHEN_UNQUANTIZED = {"quant_dtype", "ocp_mx_scheme", "block_shape"}
# The scales of an attention's fused output quantization: only a quantized model's compile pass (attention +
# quant fusion) passes them, so a parameter of these names that its function never rebinds is None.
_QUANT_OUTPUT_SCALES = {"output_scale", "output_block_scale"}
# `<...>model_config.quantization`: the model's quantization method, None when quantization is off.
_QUANT_METHOD_ATTR = "quantization"
_KV_DTYPE_NAMES = {"kv_cache_dtype", "cache_dtype", "kv_cache_dtype_str", "cache_dtype_str"}
_KV_QUANT_CALLS = {"is_quantized_kv_cache", "kv_cache_uses_per_token_head_scales"}
_LORA_FLAGS = {"is_lora_enabled", "lora_enabled", "enable_lora"}
# the MoE experts' LoRA context: only set (set_lora_context) by vLLM's LoRA layers
_NONE_WITHOUT_LORA = {"_lora_context", "lora_context"}
# without KV transfer: the config is None and no KV connector exists (vllm/distributed/kv_transfer)
_NONE_WITHOUT_KV_TRANSFER = {"kv_transfer_config"}
_KV_TRANSFER_CALLS = {"has_kv_transfer_group"}
# vLLM's engine broadcasts the scheduler's inputs to its workers through a shared-memory message queue (ZeroMQ); a
# bundle's ranks each make their own inputs, so a group never makes that broadcaster
_ENGINE_BROADCAST_FLAGS = {"use_message_queue_broadcaster"}

_SIZE_NAMES = {
    "dp": {"dp_size", "data_parallel_size", "get_dp_group().world_size"},
    "tp": {"tensor_parallel_size", "tensor_model_parallel_size", "get_tensor_model_parallel_world_size"},
    "pp": {"pp_size", "pipeline_parallel_size", "get_pipeline_model_parallel_world_size"},
    "ep": {"ep_size", "get_ep_world_size"},
}
# Local names of a tensor-parallel size: the tp group's, except in vLLM's MoE code under expert parallelism, where
# `tp_size` is the experts' (1: FusedMoEParallelConfig gives the experts ep_size = tp and tp_size = 1). Decided
# only while ep is 1, where both are the variant's tp.
_TP_LOCAL_NAMES = {"tp_size", "tp_world_size", "tp_world"}


def _tail(e: ast.expr) -> str | None:
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Attribute):
        return e.attr
    return None


PLATFORM_NAMES = frozenset({"current_platform", "platform"})


@dataclass(frozen=True)
class Where:
    """What the evaluator knows of the code around an expression, given by the caller with each evaluation
    (the scanner for a scanned statement; a predicate for the body it evaluates)."""
    module: str = ""                                 # the module whose code it is
    cls: tuple | None = None                         # (module, ClassDef) whose body or method it is in
    locals: Mapping = field(default_factory=dict)    # the enclosing function's single assignments
    repeated: Mapping = field(default_factory=dict)  # its locals bound several times, each by `name = expr`: values
    foreign_predicates: frozenset = frozenset()      # names bound to another platform's `-> bool` functions
    local_names: frozenset = frozenset()             # names local to the enclosing functions
    literal_bools: bool = False                      # True/False literals decide (a predicate's body)
    params: Mapping = field(default_factory=dict)    # parameter -> known value (a held branch, a predicate call)
    platform_names: frozenset = PLATFORM_NAMES       # names bound to current_platform
    arg_names: frozenset = frozenset()               # parameters of the enclosing functions never rebound there
    none_params: frozenset = frozenset()             # parameters of the enclosing function that default to None
    used_params: set = field(default_factory=set)    # out: the parameters of `params` the value rests on


class Oracle:
    """What the evaluator asks the graph (predicates.py and vllm/ give the answers; these are the defaults)."""

    def unquantized_bases(self) -> set[str]:
        """Names of the classes an `Unquantized*` class of the tree derives from."""
        return set()

    def env_default(self, name: str):
        """The default value of envs.<name>, or _UNKNOWN."""
        return _UNKNOWN

    def method_predicate(self, module: str, cls: str, method: str) -> bool | None:
        """The value of `Cls.method()`, a class's predicate method the variant decides, or None."""
        return None

    def function_predicate(self, module: str, name: str, args: tuple) -> bool | None:
        """The value of `f(*args)`, a module-level function returning a test the variant and args decide, or None."""
        return None

    def global_predicate(self, module: str, name: str) -> bool | None:
        """The value of a module-level name bound once to a decided test (`IS_ROCM = current_platform.is_rocm()`)."""
        return None

    def function_value(self, module: str, name: str, args: tuple):
        """The value `name(*args)` returns (args: known values or _UNKNOWN), where its leading decided ifs
        return a literal (`if scale is None: return None`), or _UNKNOWN."""
        return _UNKNOWN

    def global_value(self, module: str, name: str):
        """The value of a module-level name bound once to a call whose value function_value knows
        (`device_platform = _check_platform()`), or _UNKNOWN."""
        return _UNKNOWN

    def instance_constant(self, module: str, name: str) -> bool:
        """A module-level name bound once to an instance of a tree's class (`kFp8 = QuantKey(...)`): never None."""
        return False

    def is_custom_op(self, module: str, cls: ast.ClassDef, defines: str | None = None) -> bool:
        """The class is vLLM's CustomOp or derives from it (its `enabled()` reads custom_ops), and defines the
        method `defines` (itself, or a base below CustomOp) when one is named."""
        return False


class GuardEval:
    def __init__(self, variant: dict, oracle: Oracle | None = None):
        self.variant = variant
        self.oracle = oracle or Oracle()
        self.model = {k: (tuple(v) if isinstance(v, list) else v) for k, v in variant.get("model_facts", {}).items()}
        self.platform = platform_predicates(variant)
        self.sizes = parallel_sizes(variant)
        # names whose value the variant makes None: false as a test, None as a value
        self.none_names: set[str] = set()
        self.none_names |= _NONE_WITHOUT_EPLB
        if variant.get("lora") == "none":
            self.none_names |= _NONE_WITHOUT_LORA
        if variant.get("kv_transfer") == "none":
            self.none_names |= _NONE_WITHOUT_KV_TRANSFER

    # ------------------------------------------------------------- atoms
    def _atom(self, e: ast.expr, w: Where):
        """The value the variant gives the sub-expression `e` on its own, or None."""
        v = self._code_atom(e, w)
        if v is None:
            v = self._variant_atom(e, w)
        if v is None:
            v = self._model_atom(e, w)
        if v is not None:
            return v
        if isinstance(e, ast.Name):
            return self._name(e, w)
        if isinstance(e, ast.Compare) and len(e.ops) == 1:
            return self._compare_atom(e, w)
        return None

    def _code_atom(self, e: ast.expr, w: Where):
        """Platform queries, TYPE_CHECKING, and the tree's predicates (the oracle's)."""
        # current_platform.is_xxx()
        if (isinstance(e, ast.Call) and not e.args and not e.keywords
                and isinstance(e.func, ast.Attribute) and e.func.attr in self.platform
                and _tail(e.func.value) in w.platform_names):
            return self.platform[e.func.attr]
        if _tail(e) == "TYPE_CHECKING":
            return False
        # a function of another platform's module answering yes/no (`-> bool`: `use_rocm_custom_paged_attention` on
        # CUDA) asks about that platform's hardware: no
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id in w.foreign_predicates:
            return False
        if w.literal_bools and isinstance(e, ast.Constant) and isinstance(e.value, bool):
            return e.value
        # Cls.is_x_enabled(): a predicate classmethod the variant decides (e.g. rocm_aiter_ops.is_enabled())
        if (isinstance(e, ast.Call) and not e.args and not e.keywords and isinstance(e.func, ast.Attribute)
                and isinstance(e.func.value, ast.Name) and e.func.value.id not in w.platform_names):
            v = self.oracle.method_predicate(w.module, e.func.value.id, e.func.attr)
            if v is not None:
                return v
        # is_x_enabled() / should_load(quant_method): a module-level function that returns a test the variant
        # and the values of its arguments decide
        if (isinstance(e, ast.Call) and not e.keywords and isinstance(e.func, ast.Name)
                and e.func.id not in w.local_names and not any(isinstance(a, ast.Starred) for a in e.args)):
            args = [self._known(a, w) for a in e.args]
            if not any(a is _UNKNOWN for a in args):
                v = self.oracle.function_predicate(w.module, e.func.id, tuple(args))
                if v is not None:
                    return v
        if self.variant["platform"] == "cuda":
            return capability.query(e, self.variant["cuda_capability"], w.platform_names)
        return None

    def _variant_atom(self, e: ast.expr, w: Where):
        """Switches the variant turns off (expert parallelism, quantization, LoRA, KV transfer, KV cache dtype)."""
        if not isinstance(e, ast.Call) and _tail(e) == _EP_ON:
            return self.sizes["ep"] > 1
        if not isinstance(e, ast.Call) and _EP_FLAG.match(_tail(e) or ""):
            return False
        if not isinstance(e, ast.Call) and (_tail(e) or "") in self.none_names:
            return False
        quant_none = self.variant["quantization"] == "none"
        kv_auto = self.variant.get("kv_cache_dtype") == "auto"
        tail = _tail(e) or ""
        if quant_none and not isinstance(e, ast.Call) and _QUANT_FLAG.match(tail):
            return False
        if self.variant.get("lora") == "none" and not isinstance(e, ast.Call) and tail in _LORA_FLAGS:
            return False
        if not isinstance(e, ast.Call) and tail in _ENGINE_BROADCAST_FLAGS:
            return False
        if kv_auto and isinstance(e, ast.Call) and _tail(e.func) in _KV_QUANT_CALLS:
            return False
        if (self.variant.get("kv_transfer") == "none" and isinstance(e, ast.Call) and not e.args and not e.keywords
                and _tail(e.func) in _KV_TRANSFER_CALLS):
            return False
        if kv_auto and not isinstance(e, ast.Call) and tail in ("is_per_token_head", "_is_per_token_head_quant"):
            return False
        # kv_cache_dtype.startswith("fp8") / .endswith("per_token_head")
        if (isinstance(e, ast.Call) and isinstance(e.func, ast.Attribute) and e.func.attr in ("startswith", "endswith")
                and len(e.args) == 1 and not e.keywords and isinstance(e.args[0], ast.Constant)
                and isinstance(e.args[0].value, str) and _tail(e.func.value) in _KV_DTYPE_NAMES
                and self.variant.get("kv_cache_dtype") is not None):
            return getattr(self.variant["kv_cache_dtype"], e.func.attr)(e.args[0].value)
        return None

    def _model_atom(self, e: ast.expr, w: Where):
        """The model's facts, envs defaults, quantization off, custom ops on."""
        quant_none = self.variant["quantization"] == "none"
        tail = _tail(e) or ""
        # use_grouped_topk and other boolean facts of the model
        if not isinstance(e, ast.Call) and isinstance(self.model.get(tail), bool):
            return self.model[tail]
        # isinstance(router, ZeroExpertRouter) for a model without zero experts
        if (isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id == "isinstance" and len(e.args) == 2
                and (_tail(e.args[1]) or "") in self.model.get("absent_classes", ())):
            return False
        # "mrope_section" in rope_parameters
        if (isinstance(e, ast.Compare) and len(e.ops) == 1 and isinstance(e.ops[0], (ast.In, ast.NotIn))
                and isinstance(e.left, ast.Constant) and isinstance(e.left.value, str)
                and isinstance(self.model.get(_tail(e.comparators[0]) or ""), dict)):
            inside = e.left.value in self.model[_tail(e.comparators[0])]
            return inside if isinstance(e.ops[0], ast.In) else not inside
        # envs.VLLM_X: its default value
        if (self.variant.get("envs") == "defaults" and isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name)
                and e.value.id == "envs"):
            v = self.oracle.env_default(e.attr)
            if v is not _UNKNOWN:
                return bool(v)
        # `if quant_config:` / `isinstance(quant_config, X)` with quantization off
        if quant_none and (_tail(e) or "") in _QUANT_CONFIG_NAMES:
            return False
        if (quant_none and isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id == "isinstance"
                and e.args and (_tail(e.args[0]) or "") in _QUANT_CONFIG_NAMES):
            return False
        # isinstance(quant_method, SomeQuantizedMethod): with quantization off every quant_method is an
        # Unquantized*Method, so a specific quantized method class never matches
        if (quant_none and isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id == "isinstance"
                and len(e.args) == 2 and (_tail(e.args[0]) or "") == "quant_method"):
            classes = e.args[1].elts if isinstance(e.args[1], ast.Tuple) else [e.args[1]]
            names = [_tail(c) or "" for c in classes]
            if names and all(nm and "Unquantized" not in nm and nm not in self.oracle.unquantized_bases() for nm in names):
                return False
        # self.enabled() in a CustomOp: on for every custom op when the variant turns custom ops on (vLLM's
        # overrides of enabled() all return True)
        if (self.variant.get("custom_ops") == "enabled" and isinstance(e, ast.Call) and not e.args
                and not e.keywords and isinstance(e.func, ast.Attribute) and e.func.attr == "enabled"
                and isinstance(e.func.value, ast.Name) and e.func.value.id in ("self", "cls")
                and w.cls is not None and self.oracle.is_custom_op(*w.cls)):
            return True
        return None

    def _compare_atom(self, e: ast.Compare, w: Where):
        """`x <op> y` where the variant knows x (quant_config is None, backend == X.MEMBER, tp_size > 1, ...)."""
        left, op, right = e.left, e.ops[0], e.comparators[0]
        # quant_config is None / is not None
        if isinstance(op, (ast.Is, ast.IsNot)) and isinstance(right, ast.Constant) and right.value is None:
            t = _tail(left)
            if t in _QUANT_CONFIG_NAMES and self.variant["quantization"] == "none":
                return isinstance(op, ast.Is)
        decided = self._compare_values(left, op, right, w)
        if decided is not None:
            return decided
        # backend == SomeMoeBackend.MEMBER (the variant forces one backend)
        if isinstance(op, (ast.Eq, ast.NotEq, ast.Is, ast.IsNot)):
            v = self._backend(right)
            if v is None:
                v = self._backend(left)
            if v is not None:
                return v if isinstance(op, (ast.Eq, ast.Is)) else not v
        if self.variant["platform"] == "cuda":
            v = capability.compared(e, self.variant["cuda_capability"], w.platform_names)
            if v is not None:
                return v
        # parallel sizes against int literals
        size = self._size(left)
        if size is not None and isinstance(right, ast.Constant) and type(right.value) is int:
            return _compare(size, op, right.value)
        return None

    def _name(self, e: ast.Name, w: Where):
        """A parameter taken at its default (a held branch); a local bound once, before `e`, to a decided test;
        else a module-level name that is."""
        if e.id in w.params:
            w.used_params.add(e.id)
            return bool(w.params[e.id])
        bound = w.locals.get(e.id)
        if bound is not None:
            if bound.lineno >= e.lineno:
                return None
            # through the locals bound before it (`use_q = quant_key is not None and ...`, `quant_key = f(..)`)
            earlier = {k: v for k, v in w.locals.items() if v.lineno < bound.lineno}
            return self._eval(bound, [], replace(w, locals=earlier))
        values = w.repeated.get(e.id)
        if values:
            # every binding decided, to one value (a literal bound too: `use_custom = False`)
            got = {self._eval(v, [], replace(w, locals={}, repeated={}, literal_bools=True)) for v in values}
            return got.pop() if len(got) == 1 and None not in got else None
        if e.id in w.local_names:
            return None
        return self.oracle.global_predicate(w.module, e.id)

    def _value(self, e: ast.expr, w: Where):
        """The variant's value of `e` (quant_dtype, kv_cache_dtype, attn_type, envs.X, kv_quant_mode), or
        _UNKNOWN. Enum members are returned as ("enum", Enum, MEMBER)."""
        tail = _tail(e) or ""
        if isinstance(e, ast.Name) and e.id in w.params:
            w.used_params.add(e.id)
            return w.params[e.id]
        if isinstance(e, ast.IfExp):   # `x if <decided> else y`: the value of the arm taken
            v = self._eval(e.test, [], w)
            return _UNKNOWN if v is None else self._known(e.body if v else e.orelse, w)
        if isinstance(e, ast.Name) and e.id in w.locals:
            v = self._value(w.locals[e.id], replace(w, locals={}))   # no chains through other locals
            if v is not _UNKNOWN:
                return v
        if self.variant["quantization"] == "none" and tail in _NONE_WHEN_UNQUANTIZED and not isinstance(e, ast.Call):
            return None
        if (self.variant["quantization"] == "none" and isinstance(e, ast.Name) and e.id in _QUANT_OUTPUT_SCALES
                and e.id in w.arg_names):
            return None
        if (self.variant["quantization"] == "none" and isinstance(e, ast.Attribute) and e.attr == _QUANT_METHOD_ATTR
                and (_tail(e.value) or "").endswith("model_config")):
            return None
        # f(...): a module-level function of the tree whose leading decided ifs return a literal
        if (isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id not in w.local_names
                and not e.keywords and not any(isinstance(a, ast.Starred) for a in e.args)):
            v = self.oracle.function_value(w.module, e.func.id, tuple(self._known(a, w) for a in e.args))
            if v is not _UNKNOWN:
                return v
        if isinstance(e, ast.Name) and e.id not in w.local_names and e.id not in w.locals:
            v = self.oracle.global_value(w.module, e.id)
            if v is not _UNKNOWN:
                return v
        if tail in self.none_names and not isinstance(e, ast.Call):
            return None
        if tail in _KV_DTYPE_NAMES and not isinstance(e, ast.Call) and "kv_cache_dtype" in self.variant:
            return self.variant["kv_cache_dtype"]
        if "kv_quant_mode" in tail and not isinstance(e, ast.Call) and self.variant.get("kv_cache_dtype") == "auto":
            return ("enum", "KVQuantMode", "NONE")
        if (tail in self.model and tail != "absent_classes" and not isinstance(e, ast.Call)
                and not isinstance(self.model[tail], (dict, bool))):
            return self.model[tail]
        # not a parameter defaulting to None: an optional argument, the caller's (EncoderOnlyAttention's attn_type)
        if (tail == "attn_type" and not isinstance(e, ast.Call) and "attn_type" in self.variant
                and not (isinstance(e, ast.Name) and e.id in w.none_params)):
            return ("enum", "AttentionType", self.variant["attn_type"].upper())
        if (self.variant.get("envs") == "defaults" and isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name)
                and e.value.id == "envs"):
            return self.oracle.env_default(e.attr)
        return _UNKNOWN

    def _known(self, e: ast.expr, w: Where):
        """The literal `e` is, or the variant's value of it, or _UNKNOWN."""
        v = self._literal(e)
        return self._value(e, w) if v is _UNKNOWN else v

    @staticmethod
    def _literal(e: ast.expr):
        if isinstance(e, ast.Constant):
            return e.value
        if (isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name)
                and e.value.id in ("KVQuantMode", "AttentionType", "MoEActivation")):
            return ("enum", e.value.id, e.attr)
        if isinstance(e, (ast.Tuple, ast.List, ast.Set)):
            items = [GuardEval._literal(x) for x in e.elts]
            return _UNKNOWN if any(x is _UNKNOWN for x in items) else tuple(items)
        return _UNKNOWN

    def _compare_values(self, left: ast.expr, op: ast.cmpop, right: ast.expr, w: Where):
        """`x <op> literal` where the variant knows x (or the reverse for ==)."""
        if isinstance(op, (ast.In, ast.NotIn)) and isinstance(self._literal(left), str):
            whole = self._value(right, w)   # a substring of a known string (`"cpu" in version("vllm")`)
            if isinstance(whole, str):
                return (self._literal(left) in whole) == isinstance(op, ast.In)
        a, b = self._value(left, w), self._literal(right)
        if a is _UNKNOWN and isinstance(op, (ast.Eq, ast.NotEq)):
            a, b = self._value(right, w), self._literal(left)
            left, right = right, left
        if a is None and b is _UNKNOWN and isinstance(op, (ast.Eq, ast.NotEq)) and (isinstance(
                right, (ast.Attribute, ast.Call)) or self._instance_constant(right, w)):
            return isinstance(op, ast.NotEq)   # None against a dtype / enum member / call result / QuantKey
        # None in (kFp8Dynamic128Sym, kFp8Dynamic64Sym): constants that are instances, never None
        if (a is None and b is _UNKNOWN and isinstance(op, (ast.In, ast.NotIn)) and isinstance(right, (ast.Tuple,
                ast.List, ast.Set)) and right.elts and all(self._instance_constant(x, w) for x in right.elts)):
            return isinstance(op, ast.NotIn)
        if a is _UNKNOWN or b is _UNKNOWN:
            return None
        # an enum member against another enum's or against strings (a str `activation` beside MoEActivation): undecided
        if isinstance(a, tuple) and a[:1] == ("enum",) and b is not None and not (_member_of(b, a[1]) or (
                isinstance(b, tuple) and all(_member_of(m, a[1]) for m in b))):
            return None
        if isinstance(op, ast.Is):
            return a is b if b is None else None
        if isinstance(op, ast.IsNot):
            return a is not b if b is None else None
        if isinstance(op, ast.Eq):
            return a == b
        if isinstance(op, ast.NotEq):
            return a != b
        if isinstance(op, (ast.In, ast.NotIn)) and isinstance(b, tuple) and not (len(b) == 3 and b[0] == "enum"):
            return (a in b) if isinstance(op, ast.In) else (a not in b)
        return None

    def _instance_constant(self, e: ast.expr, w: Where) -> bool:
        return (isinstance(e, ast.Name) and e.id not in w.local_names and e.id not in w.params
                and self.oracle.instance_constant(w.module, e.id))

    def _backend(self, e: ast.expr):
        if not (isinstance(e, ast.Attribute) and isinstance(e.value, (ast.Name, ast.Attribute))):
            return None
        enum = _tail(e.value) or ""
        low = enum.lower()
        if "moe" in low and "backend" in low:
            return e.attr.lower() == str(self.variant["moe_backend"]).lower()
        if low in ("attentionbackendenum", "_backend", "backendenum"):
            return e.attr == self.variant["attention_backend"]
        return None

    def _size(self, e: ast.expr):
        if isinstance(e, ast.Call) and not e.args and not e.keywords:
            e = e.func
        t = _tail(e)
        if t is None:
            return None
        for key, names in _SIZE_NAMES.items():
            if t in names:
                return self.sizes[key]
        if t in _TP_LOCAL_NAMES and self.sizes["ep"] == 1:
            return self.sizes["tp"]
        # get_tp_group().world_size
        if (t == "world_size" and isinstance(e, ast.Attribute) and isinstance(e.value, ast.Call)
                and _tail(e.value.func) in ("get_tp_group", "get_pp_group", "get_ep_group")):
            return self.sizes.get(_tail(e.value.func)[4:6])
        # self.tp_group.world_size
        if (t == "world_size" and isinstance(e, ast.Attribute)
                and _tail(e.value) in ("tp_group", "pp_group", "ep_group")):
            return self.sizes.get(_tail(e.value)[:2])
        return None

    # ------------------------------------------------------------- expressions
    def evaluate(self, e: ast.expr, w: Where):
        atoms: list = []
        v = self._eval(e, atoms, w)
        return v, ([] if v is not None else atoms)

    def _eval(self, e: ast.expr, atoms: list, w: Where):
        v = self._atom(e, w)
        if v is not None:
            atoms.append((e, v))
            return v
        if (isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id == "bool" and len(e.args) == 1
                and not e.keywords and "bool" not in w.local_names):
            inner: list = []
            v = self._eval(e.args[0], inner, w)
            if v is not None:
                atoms.append((e, v))
                return v
            atoms.extend(inner)
            return None
        if isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.Not):
            inner: list = []
            v = self._eval(e.operand, inner, w)
            if v is not None:
                atoms.append((e, not v))
                return not v
            atoms.extend(inner)
            return None
        if isinstance(e, ast.BoolOp):
            inner = []
            vals = [self._eval(x, inner, w) for x in e.values]
            if isinstance(e.op, ast.And):
                if any(v is False for v in vals):
                    atoms.append((e, False))
                    return False
                if all(v is True for v in vals):
                    atoms.append((e, True))
                    return True
            else:
                if any(v is True for v in vals):
                    atoms.append((e, True))
                    return True
                if all(v is False for v in vals):
                    atoms.append((e, False))
                    return False
            atoms.extend(inner)
            return None
        return None


def _member_of(value, enum: str) -> bool:
    """Whether `value` is a known member ("enum", `enum`, member) of the enum class named `enum`."""
    return isinstance(value, tuple) and value[:2] == ("enum", enum)


class _Unknown:
    def __repr__(self):
        return "<unknown>"


_UNKNOWN = _Unknown()


def _compare(a: int, op: ast.cmpop, b: int):
    if isinstance(op, ast.Eq):
        return a == b
    if isinstance(op, ast.NotEq):
        return a != b
    if isinstance(op, ast.Gt):
        return a > b
    if isinstance(op, ast.GtE):
        return a >= b
    if isinstance(op, ast.Lt):
        return a < b
    if isinstance(op, ast.LtE):
        return a <= b
    return None
