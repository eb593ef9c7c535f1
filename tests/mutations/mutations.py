"""The mutation table: each entry is one named, one-line semantic change to a rule of A1, A2, A3, A5, A6 or A7 (`old`
must occur exactly once in `file`; `new` replaces it) and the pytest selection that must kill it (fast unit
tests where they cover it). run.py applies them one at a time."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    name: str
    stage: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


G = "bundler_lib/graph/"
CLOSURE = ("tests/test_graph_closure.py",)
ENGINE = ("tests/test_graph_engine.py",)
A2_UNITS = ("tests/test_collect_python_units.py",)
# test_bind's tests that need no vLLM tree (the others run A4 over a real sdist first)
BIND = ("tests/test_bind.py", "-k", "no_cuda_ops or merge_imports or anchors or data_helper or compile_decorators"
        " or lazy or namespaces or registrations or share_a_process or cannot_rewrite")
DEPS = ("tests/test_runtime_deps.py",)
REACH = ("tests/test_reachability.py", "-k", "not remove_each_reached_definition")
PKG = "tests/test_package.py::"
EINOPS = ("tests/test_einops_fallback.py",)
SCOPES = ("tests/test_common_scopes.py",)
PARALLEL = ("tests/test_parallel_variant.py",)
MOE_TUNE = ("tests/test_moe_tune.py",)
TUNE = "bundler_lib/example/moe_tune.py"


def _m(name, stage, file, old, new, *tests):
    return Mutation(name, stage, file, old, new, tuple(tests))


MUTATIONS = [
    # ---- A1: the graph (engine and rules) ----
    _m("a1-pruned-binding-literal-undecided", "A1", G + "predicates.py",
       "literal_bools=pruned))", "literal_bools=False))", *CLOSURE),
    _m("a1-block-defs-not-members", "A1", G + "engine.py",
       "isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not sub.decorator_list:",
       "isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and False:", *CLOSURE),
    _m("a1-probe-imports-are-members", "A1", G + "engine.py",
       "and not probing and external(sub):", "and external(sub):", *CLOSURE),
    _m("a1-own-distribution-version-unknown", "A1", G + "predicates.py",
       "        if dist is not None:\n            return dist\n", "", *CLOSURE),
    _m("a1-substring-of-known-string-undecided", "A1", G + "guards.py",
       "            if isinstance(whole, str):\n", "            if False:\n", *CLOSURE),
    _m("a1-compiled-platform-forward-kept", "A1", G + "refs.py",
       "        if not self._native_instead(fn):\n", "        if True:\n", *CLOSURE),
    _m("a1-native-forward-not-inherited", "A1", G + "vllm/names.py",
       "            defines = None\n", "            pass\n", *CLOSURE),
    _m("a1-native-forward-of-customop-counts", "A1", G + "vllm/names.py",
       "            return defines is None\n", "            return True\n", *CLOSURE),
    _m("a1-guarded-compiled-import-counts", "A1", G + "imports_scan.py",
       "        elif isinstance(st, ast.Try) and any(catches_import_error(h) for h in st.handlers):",
       "        elif False:", *CLOSURE),
    _m("a1-optional-attn-type-param-decided", "A1", G + "guards.py",
       "                and not (isinstance(e, ast.Name) and e.id in w.none_params)):",
       "                and True):", *CLOSURE),
    _m("a6-encoder-attention-decodes", "A6", "bundler_lib/example/core.py",
       '    elif kv and attn_type in ("encoder", "encoder_only"):\n', "    elif False:\n",
       "tests/test_example.py", "-k", "workload"),
    _m("a4-driver-not-global", "A4", "bundler_lib/cuda/emit.py",
       'ctypes.CDLL("libcuda.so.1", mode=ctypes.RTLD_GLOBAL)', 'ctypes.CDLL("libcuda.so.1")',
       "tests/test_collect_cuda.py"),
    _m("a1-compile-dims-not-written", "A1", G + "vllm/compile_dims.py",
       "            if edit is not None:\n", "            if edit is None:\n", *CLOSURE),
    _m("a1-ir-priority-not-per-op", "A1", G + "vllm/ir.py",
       'return [p for p in self.priority if p == "native" or (op, p) in registered] or ["native"]',
       "return list(self.priority)", *CLOSURE),
    _m("a1-forward-not-always-kept", "A1", G + "classes.py",
       'or name == "forward"', "", *CLOSURE),
    _m("a1-dunders-not-always-kept", "A1", G + "classes.py",
       'return (name.startswith("__") and name.endswith("__")) or', "return", *CLOSURE),
    _m("a1-files-unsorted", "A1", G + "__init__.py",
       "files = sorted({n.file for n in nodes})", "files = list({n.file for n in nodes})",
       "tests/test_graph_closure.py::test_deterministic"),
    _m("a1-has-capability-strict", "A1", G + "guards.py", "return cap >= want", "return cap > want", *CLOSURE),
    _m("a1-is-capability-negated", "A1", G + "guards.py", "return cap == want", "return cap != want", *CLOSURE),
    _m("a1-capability-family-any-newer", "A1", G + "guards.py",
       "return cap // 10 == want // 10", "return cap // 10 >= want // 10", *CLOSURE),
    _m("a1-type-checking-not-pruned", "A1", G + "guards.py",
       'if _tail(e) == "TYPE_CHECKING":', 'if _tail(e) == "TYPE_CHECKING_":', *CLOSURE),
    _m("a1-lora-flags-kept", "A1", G + "guards.py",
       'if self.variant.get("lora") == "none" and not isinstance(e, ast.Call) and tail in _LORA_FLAGS:',
       'if self.variant.get("lora") == "any" and not isinstance(e, ast.Call) and tail in _LORA_FLAGS:', *CLOSURE),
    _m("a1-held-literal-default-inverted", "A1", G + "held.py",
       "if isinstance(v, ast.Constant) and same(v.value):",
       "if isinstance(v, ast.Constant) and not same(v.value):", *CLOSURE),
    _m("a1-held-ignores-function-values", "A1", G + "held.py",
       "                    sites[key] = None\n            for _, _, key, _ in d.op_links:",
       "                    pass\n            for _, _, key, _ in d.op_links:", *CLOSURE),
    _m("a1-abstract-stub-on-class-not-kept", "A1", G + "classes.py",
       "return True   # runs on the abstract class itself", "return False", *CLOSURE),
    _m("a1-root-drops-nothing", "A1", G + "vllm/platform.py",
       "return foreign_forwards(variant)", "return set()", *CLOSURE),
    _m("a1-triton-jit-not-recognised", "A1", G + "engine.py",
       'if t == "jit":', 'if t == "jit_":', *CLOSURE),
    _m("a1-vllm-ops-as-cuda-ops", "A1", G + "vllm/ops.py",
       'if ns == "vllm":', 'if ns == "vllm_":', *CLOSURE),
    _m("a1-edges-unsorted", "A1", G + "__init__.py",
       "edges = sorted({(ids[n.key], ids[d]) for n in nodes for d in n.deps if d in ids})",
       "edges = list({(ids[n.key], ids[d]) for n in nodes for d in n.deps if d in ids})",
       "tests/test_graph_closure.py::test_deterministic"),
    _m("a1-annotation-only-imports-empty", "A1", G + "__init__.py",
       '"imports_annotation_only": sorted(set(imports) - evaluated),', '"imports_annotation_only": [],', *CLOSURE),
    _m("a1-runtime-only-imports-empty", "A1", G + "__init__.py",
       '"imports_runtime_only": sorted(set(imports) - importtime),', '"imports_runtime_only": [],', *CLOSURE),
    # A1 on several GPUs (issue 21)
    _m("a1-use-ep-always-off", "A1", G + "guards.py",
       'return self.sizes["ep"] > 1', "return False", *PARALLEL),
    _m("a1-moe-tp-size-decided-under-ep", "A1", G + "guards.py",
       'if t in _TP_LOCAL_NAMES and self.sizes["ep"] == 1:', "if t in _TP_LOCAL_NAMES:", *PARALLEL),
    _m("a1-message-queue-broadcaster-kept", "A1", G + "guards.py",
       "if not isinstance(e, ast.Call) and tail in _ENGINE_BROADCAST_FLAGS:", "if False:", *PARALLEL),
    _m("a1-communicator-never-bound", "A1", G + "vllm/by_name.py",
       "if world_size(self.variant) == 1:", "if True:", *PARALLEL),
    _m("a1-torch-ops-missed-after-import-torch-submodule", "A1", G + "vllm/ops.py",
       'is_torch = b.attr is None and (b.module == "torch" or (b.name == "torch" and b.module.startswith("torch.")))',
       'is_torch = b.module == "torch"', *PARALLEL),
    _m("a1-attention-backend-comparison-flipped", "A1", G + "guards.py",
       'return e.attr == self.variant["attention_backend"]', 'return e.attr != self.variant["attention_backend"]',
       "tests/test_attention_backends.py", "-k", "decides_and_binds"),
    _m("a1-example-roots-of-the-default-backend", "A1", G + "__init__.py",
       '                              variant["attention_backend"])', '                              "TRITON_ATTN")',
       "tests/test_attention_backends.py", "-k", "real_tree"),
    # ---- A2: Python section ----
    _m("a2-import-guard-removed", "A2", "bundler_lib/common/imports.py",
       'out.append(f"try:\\n    {st}\\nexcept ImportError:  # optional package\\n"\n', "out.append(st); (\"\"",
       *A2_UNITS, *CLOSURE),
    _m("a2-absent-package-left-unbound", "A2", "bundler_lib/common/imports.py",
       'for line in absent_bindings(st)', 'for line in ["pass"]', *A2_UNITS),
    _m("a2-regex-fallback-removed", "A2", "bundler_lib/common/imports.py",
       '"regex": "re",', '"regex_": "re",', *A2_UNITS, *CLOSURE),
    _m("a2-stdlib-not-required", "A2", "bundler_lib/common/imports.py",
       "return top in REQUIRED_TOPS or top in sys.stdlib_module_names or", "return top in REQUIRED_TOPS or",
       *A2_UNITS, *CLOSURE),
    _m("a2-annotation-only-imports-kept", "A2", "bundler_lib/common/imports.py",
       'if st in annotation_only and (st.startswith("from ") or " as " in st or not is_required(st)):',
       "if False:", *A2_UNITS, *CLOSURE),
    _m("a2-unnamed-submodule-import-kept", "A2", "bundler_lib/common/imports.py",
       'if re.search(r"(?<![\\w.])" + re.escape(chain) + r"\\b", uses):', "if True:", *A2_UNITS, *CLOSURE),
    _m("a2-unnamed-import-kept", "A2", "bundler_lib/common/imports.py",
       'if any(re.search(r"(?<![\\w.])" + re.escape(n) + r"\\b", text) for n in names):', "if True:",
       *A2_UNITS, *CLOSURE),
    _m("a2-target-symbol-optional", "A2", "bundler_lib/common/imports.py",
       "            out.pop(n[\"id\"], None)", "            pass", *A2_UNITS, *CLOSURE),
    _m("a2-optional-not-propagated", "A2", "bundler_lib/common/imports.py",
       'hit = [d for d in n.get("importtime_deps", []) if d in out]', "hit = []", *A2_UNITS, *CLOSURE),
    _m("a2-einops-replacement-removed", "A2", "bundler_lib/common/imports.py",
       'EMBEDDED: dict[str, ModuleType] = {"einops": einops_fallback}',
       'EMBEDDED: dict[str, ModuleType] = {"einops_": einops_fallback}', *EINOPS),
    _m("a2-import-alias-ignored", "A2", "bundler_lib/common/imports.py",
       'alias = p[2] if len(p) == 3 and p[1] == "as" else None', "alias = None", *A2_UNITS),
    _m("a2-einops-axes-not-permuted", "A2", "bundler_lib/common/einops_fallback.py",
       "out = out.permute([left_axes.index(a) for a in kept])", "out = out.permute(list(range(len(kept))))",
       *EINOPS),
    _m("a2-einops-left-parenthesised-ellipsis-accepted", "A2", "bundler_lib/common/einops_fallback.py",
       'raise EinopsError("an ellipsis inside parentheses is not allowed on the left side")', "pass", *EINOPS),
    _m("a2-einops-repeat-sizes-unchecked", "A2", "bundler_lib/common/einops_fallback.py",
       "        if unsized:\n", "        if False:\n", *EINOPS),
    _m("a2-license-header-every-block", "A2", "bundler_lib/common/slices.py",
       "            headers_done.add(rel)", "            pass", *A2_UNITS, *CLOSURE),
    # ---- A1 and A7: the binding rules their scope analyses share (common/scopes.py) ----
    _m("scopes-varargs-not-parameters", "A1", "bundler_lib/common/scopes.py",
       "out.extend(x.arg for x in (a.vararg, a.kwarg) if x is not None)", "pass", *SCOPES),
    _m("scopes-comprehension-attribute-target-local", "A7", "bundler_lib/common/scopes.py",
       "        target_names(g.target, out)",
       "        out.extend(n.id for n in ast.walk(g.target) if isinstance(n, ast.Name))", *SCOPES),
    # ---- A3: data files ----
    _m("a3-bound-module-dir-not-followed", "A3", "bundler_lib/data_files.py",
       "uses = _local_uses(anchor, parents)", "uses = None",
       "tests/test_collect_triton_data.py", "-k", "bound_to_a_local or used_otherwise"),
    _m("a3-rebound-module-dir-followed", "A3", "bundler_lib/data_files.py",
       "if declared or sum(isinstance(x.ctx, ast.Store) for x in names) != 1:", "if declared:",
       "tests/test_collect_triton_data.py", "-k", "bound_to_a_local or used_otherwise"),
    # ---- A5: bind ----
    _m("a5-embedded-definition-refused", "A5", "bundler_lib/bind/stage.py",
       'if not re.match(r"^\\s*(import|from|try:|if |def )", v):', 'if not re.match(r"^\\s*(import|from|try:|if )", v):',
       "tests/test_einops_fallback.py::test_a5_merges_the_sections_with_one_definition_before_every_guard"),
    _m("a5-vllm-ops-not-python", "A5", "bundler_lib/bind/rewrite.py",
       'if ns == "vllm":\n            return self.pyops.get(op)', 'if ns == "vllm_":\n            return self.pyops.get(op)',
       *BIND),
    _m("a5-impl-library-registers", "A5", "bundler_lib/bind/namespaces.py",
       'if ns is None or kind not in ("DEF", "FRAGMENT"):', 'if ns is None or kind not in ("DEF", "FRAGMENT", "IMPL"):',
       *BIND),
    _m("a5-torch-namespaces-renamed", "A5", "bundler_lib/bind/namespaces.py",
       "if ns and ns not in TORCH_NAMESPACES and not ns.startswith(BUNDLE_NS_PREFIX) and ns.isidentifier():",
       "if ns and not ns.startswith(BUNDLE_NS_PREFIX) and ns.isidentifier():", *BIND),
    _m("a5-bundle-namespaces-renamed", "A5", "bundler_lib/bind/namespaces.py",
       "if ns and ns not in TORCH_NAMESPACES and not ns.startswith(BUNDLE_NS_PREFIX) and ns.isidentifier():",
       "if ns and ns not in TORCH_NAMESPACES and ns.isidentifier():", *BIND),
    _m("a5-lazy-decorators-ignored", "A5", "bundler_lib/bind/decorators.py",
       "if name in LAZY_DECORATORS:", "if name in ():", *BIND),
    _m("a5-nested-class-decorators-ignored", "A5", "bundler_lib/bind/decorators.py",
       "                decorators(node.body)", "                pass", *BIND),
    _m("a5-define-without-namespace-counted", "A5", "bundler_lib/bind/namespaces.py",
       'if not m or (tail == "define" and "library" not in f and f != "define"):', "if not m:", *BIND),
    # ---- A6: the bundle's tune-moe (vLLM's fused-MoE tuning) ----
    _m("a6-tune-group-prune-inclusive", "A6", TUNE, "if group * bm > m and group != 1:",
       "if group * bm >= m and group != 1:", *MOE_TUNE),
    _m("a6-tune-prune-needs-both-gemms", "A6", TUNE, "return [c for c in space if any(_bundle_moe_keep",
       "return [c for c in space if all(_bundle_moe_keep", *MOE_TUNE),
    _m("a6-tune-large-gemm-threshold", "A6", TUNE, "if m >= 2048 and n >= 2048 and",
       "if m >= 2048 and n >= 4096 and", *MOE_TUNE),
    _m("a6-tune-keeps-the-slowest", "A6", TUNE, "if us < best_us:", "if us > best_us:", *MOE_TUNE),
    _m("a6-tune-budget-not-shared", "A6", TUNE, "share = start + (deadline - start) / (len(batches) - i)",
       "share = deadline", *MOE_TUNE),
    _m("a6-tune-file-without-triton-version", "A6", TUNE,
       'body = {"triton_version": triton_version, **', "body = {**", *MOE_TUNE),
    # ---- A7: package, reachability, dependencies ----
    _m("a7-cuda-initialised-not-checked", "A7", "bundler_lib/package/stage.py",
       'if res.get("cuda_initialized"):', "if False:", PKG + "test_cuda_initialised_at_import_is_caught"),
    _m("a7-missing-symbol-not-checked", "A7", "bundler_lib/package/stage.py",
       'if res.get("symbol") is False:', "if False:", PKG + "test_missing_symbol"),
    _m("a7-build-calls-not-checked", "A7", "bundler_lib/package/stage.py",
       'if res.get("build_calls") and not probe_cuda:', "if False:",
       PKG + "test_compiling_at_import_is_caught_even_when_the_refusal_is_swallowed"),
    _m("a7-example-call-not-checked", "A7", "bundler_lib/package/stage.py",
       "calls = top_level_example_calls(tree)", "calls = []",
       PKG + "test_example_call_at_import_is_caught_statically"),
    _m("a7-type-checking-imports-counted", "A7", "bundler_lib/runtime_deps.py",
       "if not _is_type_checking(st.test):", "if True:", *DEPS),
    _m("a7-vllm-declared", "A7", "bundler_lib/runtime_deps.py",
       "if name in PROVIDED_BY_TORCH or name in deps or name in NEVER:",
       "if name in PROVIDED_BY_TORCH or name in deps:", *DEPS),
    _m("a7-guarded-imports-declared", "A7", "bundler_lib/runtime_deps.py",
       "walk(st.body, guarded if _guards_import_error(st) else into)", "walk(st.body, into)", *DEPS),
    _m("a7-get-type-hints-ignored", "A7", "bundler_lib/package/references.py",
       'if f.id == "get_type_hints":', 'if f.id == "get_type_hints_":', *REACH),
    _m("a7-future-imports-reported", "A7", "bundler_lib/package/reachability.py",
       'if s.module == "__future__":', 'if s.module == "__future__!":', *REACH),
    _m("a7-optional-read-handler-not-checked", "A7", "bundler_lib/package/reachability.py",
       "bare = bool(catching) and all(", "bare = bool(catching) or all(",
       *REACH),
    _m("a7-optional-read-not-recorded", "A7", "bundler_lib/package/stage.py",
       "    _record_optional_reads(report, reach.optional_reads)\n", "",
       PKG + "test_optional_import_read_by_reached_code_is_reported_not_fatal"),
    _m("a7-sys-modules-alias-not-root", "A7", "bundler_lib/package/reachability.py",
       'and name_of(stmt.targets[0].value) == "sys.modules" and isinstance(stmt.value, ast.Name))',
       'and name_of(stmt.targets[0].value) == "sys.modules!" and isinstance(stmt.value, ast.Name))', *REACH),
]
