"""A5 binder: merge the A4 (CUDA), A3 (Triton) and A2 (Python) sections into one module and rewire every
compiled-op call site to the bundle's own wrappers.

Rewrites (libcst, on the merged module):
- `torch.ops.<ns>.<op>` and `torch.ops.<ns>.<op>.<overload>` (e.g. `.default`), for ns != "vllm", to A4's
  wrapper of that op (`_C_rms_norm`); called or used as a value alike;
- `torch.ops.vllm.<op>[.<overload>]` to the inlined Python function bound to it (A1 `python_custom_ops`);
- `hasattr(torch.ops.<ns>, "<op>")` to `True` for a bundled op;
- `getattr(torch.ops.<ns>, "<op>"[, default])` as `torch.ops.<ns>.<op>`; to its default where A4 could only
  stub the op (A1 marks an op whose every call site is such a getattr with a default `required: false`);
- the string `"<ns>::<op>"` (register_fake and friends) to the bundle's own `"<unique_ns>::<op>"`;
- every torch.library namespace the merged code registers ops into from Python (`registered_namespaces`:
  `Library("vllm_ir", "FRAGMENT")` of vLLM's IR, `Library("vllm", "FRAGMENT")` that `direct_register_custom_op`
  defines into, `torch.library.custom_op / triton_op / define("ns::op")`; not `Library(ns, "IMPL")`, not
  torch's own) to the bundle's own, `vllm_bundle_<key[:16]>_<ns>` (`namespace_key`: sha256 over the symbol and
  the merged sections), at the registration and at every read, together: `torch.ops.<ns>` (and longer chains),
  `getattr/hasattr(torch.ops, "<ns>")`, `"<ns>::<op>"` strings and schemas, `f"<ns>::{...}"`, the string in
  `Library("<ns>", ...)` and in comparisons with `.namespace`/`.ns`. So any number of bundles, and an installed
  vLLM, register their ops in one process without a clash. A read left naming a renamed namespace fails the stage;
- in a block inlined from a module whose data files A3 embedded (A3.data.json `anchors`), the expression for
  that module's directory (`os.path.dirname(os.path.realpath(__file__))`, `Path(__file__).parent`, ...) to
  `_bundle_data_dir("<its directory in the tree>")` (`_bundle_data_path(...)` for the Path forms), defined by
  A3's data section (A3.data.py), which goes between the Triton and the Python sections;
- `@torch.compile(...)` and `@torch.compiler.assume_constant_result` decorators that run at import (top-level
  functions, methods of top-level classes) to helpers defined after the imports (`LAZY_DECORATORS`): the same
  effect without importing torch._dynamo/torch._inductor at import (torch.compile is called at the first call).
Then it fails if any `vllm` import or any `torch.ops._C*`, `torch.ops._moe_C*` or `torch.ops.vllm` reference
remains. Writes A5.module.py and A5.bindmap.json (status, rewrites, namespaces, entry_symbol, public_signatures,
notes)."""

from bundler_lib.bind.stage import bind, run

__all__ = ["bind", "run"]
