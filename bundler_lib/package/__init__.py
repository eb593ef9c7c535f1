"""A7 package and verify: compose the bundle, check it, write it atomically (`stage.py`; the parts: `compose.py`,
`import_check.py`, `static_checks.py`, `reachability.py`).

The bundle is, in this order: the A0 notice (`#` comment lines at the very top), A5's module, A6's example.
Checks, all on the composed text before it is written:
- `syntax`: it parses (`compile`); a failure is a StageError and nothing is written but the report.
- `import`: a subprocess of this same interpreter imports the file by path with `vllm` made unimportable
  (a meta-path finder), `TORCH_EXTENSIONS_DIR` pointed at an empty temporary folder that must stay empty,
  and `torch.utils.cpp_extension.load`/`load_inline` made to fail if called: importing must compile
  nothing and run nothing. It also checks that the target symbol and `invocation_example` are defined.
  A failure writes the report (`status: failed`, the error's tail) and raises, unless
  `allow_import_failure` is set: then the bundle is written and the report says `ok_with_failures`.
- `undefined_names`: pyflakes' undefined-name messages (recorded, not fatal unless `strict_undefined_names`).
- `cuda_build`: only when `probe_cuda` is set and the subprocess sees a GPU: calls the bundle's
  `_build_cuda_extension_if_needed()`.
- `unreachable_definitions` / `unused_imports` (`package/reachability.py`): top-level defs, classes, assigned
  names and custom-op registrations that nothing reaches from the target symbol, `invocation_example` and the
  module's import-time code, and import lines nothing reached uses: closure defects. `none` or `found N`, the
  list (line, name, kind, the `# --- Inlined from` block it sits in) in details; fatal only with
  `unreachable="error"`.

`A7.report.json`: status (`ok`, `ok_with_failures`, `failed`), path (the bundle's name, relative to the
output folder), size, sha256, symbol, checks {syntax, import, undefined_names, cuda_build, unreachable_definitions,
unused_imports} (one line each), details (error tails, the undefined names, the unreachable definitions and unused
imports), notes. Nothing here is timed or names an absolute path.

The import check's interpreter starts once the bundle is compiled (importing torch and the bundle is most of A7's
time; it runs the syntax check's code object, handed over as a hash-checked .pyc, instead of compiling the bundle
again) and the other checks run in this process meanwhile, on one parse of the bundle.
"""

from bundler_lib.package.stage import run

__all__ = ["run"]
