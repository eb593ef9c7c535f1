"""Repo-local imports met while scanning code: kept (followed by the graph), removed (the bundle inlines the
module instead), or, for a module the tree has no source for (compiled vLLM code) or another platform's module,
replaced by what the bundle can honestly do: names that raise ImportError when that path runs, or, inside a
`try` whose handler catches ImportError, the ModuleNotFoundError Python itself would raise. A branch that would
choose an implementation needing a package the bundle lacks is not taken (_lacked_choice)."""

from __future__ import annotations

import ast

from bundler_lib.common.imports import bundle_lacks, catches_import_error
from bundler_lib.variant import PLATFORM_FORWARD, foreign_platform


class ImportScanning:
    """RefScanner's handling of import statements (a mixin: it uses the scanner's scopes, scan and edits)."""

    def _import(self, st: ast.stmt, sole: bool):
        if isinstance(st, ast.ImportFrom) and st.module == "__future__":
            return
        bs = self.index.import_bindings(self.info, st, False)
        local = [b for b in bs if not b.external]
        if local:
            dead, compiled = [], []
            function_level = len(local) == len(bs) and len(self.scopes) > 1
            for b in local:
                platform = foreign_platform(b.module, self.ge.variant.get("platform")) if function_level else None
                if not self.index.has_source(b.module):
                    self.scan.dead_imports.append((st.lineno, b.module))
                    dead.append((b, "compiled vLLM code that the source tree does not carry"))
                    compiled.append(b)
                elif platform and b.attr:  # `from <other platform's module> import name`
                    dead.append((b, f"specific to the {platform} platform (the bundle is built for "
                                    f"{self.ge.variant.get('platform')})"))
                elif function_level and self.scopes[-1].kind == "function" and b.name in self.scopes[-1].local:
                    # the function binds the name otherwise too (`from ext import name` in another branch):
                    # it is local throughout, so no module-level definition can stand in for this import
                    dead.append((b, "bound otherwise in the same function too, so local to it; the "
                                    "bundle has no local binding for this import"))
                else:
                    self.scan.local_imports.append(b)
            if compiled and self.import_guards and self.import_guards[-1] == len(self.scopes):
                return self._import_fails(st, compiled[0].module)
            if function_level and dead:
                self._not_bundled(st, dead)
            elif len(local) == len(bs):
                self._remove_stmt(st, sole)

    def _foreign_predicates(self, imports: dict) -> set[str]:
        """The names a function's imports bind to functions of another platform's module (vllm.platforms.rocm
        on CUDA) annotated `-> bool`."""
        out = set()
        for name, b in imports.items():
            if b.attr and foreign_platform(b.module, self.ge.variant.get("platform")) and self.index.has_source(b.module):
                fn = next((st for st in self.index.get(b.module).tree.body
                           if isinstance(st, ast.FunctionDef) and st.name == b.attr), None)
                if fn is not None and isinstance(fn.returns, ast.Name) and fn.returns.id == "bool":
                    out.add(name)
        return out

    def _not_bundled(self, st: ast.stmt, dead: list) -> None:
        """A function-level import the bundle does not carry (compiled vLLM code the tree has no source for,
        e.g. vllm_flash_attn; another platform's module, e.g. vllm.platforms.rocm on CUDA): the names it binds
        become functions that raise a clear ImportError when that path is taken. dead: [(binding, why)]."""
        pad = "\n" + " " * st.col_offset
        self._span(st, pad.join(raising_stub(b.name, f"{_what(b)!r} + ': {why}; this path is not in the bundle'", pad)
                                for b, why in dead))

    def _import_fails(self, st: ast.stmt, module: str) -> bool:
        """An import of vLLM code the tree has no source for (a compiled extension), in a try body whose handler
        catches ImportError: in the bundle it fails as it does where that extension is not built, so it becomes
        the ModuleNotFoundError Python would raise, the rest of the body is dead, and the handler runs. The names
        it binds that the closure reads (code guarded by a flag the handler sets) become functions raising
        ImportError; the emitter writes those (`stubs`: it knows which names are read)."""
        msg = f"No module named {module!r} (compiled vLLM code, not in the bundle)"
        stubs = {b.name: _what(b) for b in self.index.import_bindings(self.info, st, False)}
        self.scan.edits.append({"op": "span", "line": st.lineno, "col": st.col_offset, "end_line": st.end_lineno,
                                "end_col": st.end_col_offset, "text": f"raise ModuleNotFoundError({msg!r})",
                                "stubs": stubs})
        return True

    def _lacked_choice(self, st: ast.If) -> str | None:
        """The package an undecided `if` would choose, when the bundle lacks it: the branch is one `return` of a
        choice named after a package (`return backend, "flashinfer"`, a resolver's pick among implementations)
        that this module imports (that choice's implementation: `from flashinfer.gdn_prefill import ...`) and that
        the bundle neither requires nor replaces. The bundle cannot run that implementation, so the branch is not
        taken and the resolver picks as it does where the package is not installed. Else None."""
        if len(st.body) != 1 or not isinstance(st.body[0], ast.Return) or st.body[0].value is None:
            return None
        value = st.body[0].value
        choices = {e.value for e in (value.elts if isinstance(value, ast.Tuple) else [value])
                   if isinstance(e, ast.Constant) and isinstance(e.value, str)}
        if not choices:
            return None
        return next((p for p in sorted(choices & self.index.external_packages(self.info)) if bundle_lacks(p)), None)

    def _native_instead(self, fn: ast.FunctionDef) -> bool:
        """A CustomOp's forward for the variant's platform (forward_cuda on CUDA, as CustomOp.dispatch_forward
        picks it) whose body imports compiled vLLM code the tree has no source for (vllm_flash_attn's rotary
        kernel): the bundle cannot run that body, and forward_native is CustomOp's PyTorch-native implementation
        of the same op, so the body becomes `return self.forward_native(<its arguments>)`, and only that is
        scanned. An import in a try whose handler catches ImportError has its own fallback and does not count."""
        if (self.scopes[-2].kind != "class" or self.cls is None or self.receiver is None
                or fn.name != PLATFORM_FORWARD.get(self.ge.variant.get("platform"))
                or not self.ge.oracle.is_custom_op(*self.cls, "forward_native")):
            return False
        missing = next((m for m in _unguarded_imports(fn.body, self.index, self.info)
                        if not self.index.has_source(m)), None)
        if missing is None:
            return False
        a = fn.args
        args = [x.arg for x in (a.posonlyargs + a.args)[1:]] + ([f"*{a.vararg.arg}"] if a.vararg else [])
        args += [f"{k.arg}={k.arg}" for k in a.kwonlyargs] + ([f"**{a.kwarg.arg}"] if a.kwarg else [])
        call = f"return {self.receiver[0]}.forward_native({', '.join(args)})"
        first, last = fn.body[0], fn.body[-1]
        self.scan.edits.append({"op": "span", "line": first.lineno, "col": first.col_offset,
                                "end_line": last.end_lineno, "end_col": last.end_col_offset, "text": call})
        self.scan.notes.append((fn.lineno, f"{self.cls[1].name}.{fn.name} runs {self.cls[1].name}.forward_native: "
                                           f"its body imports {missing}, compiled vLLM code the tree has no source "
                                           "for; forward_native is the PyTorch-native implementation of the same op"))
        self._stmt_list(ast.parse(call).body)
        return True


def _unguarded_imports(body: list[ast.stmt], index, info):
    """The repo-local modules the statements import, outside try bodies whose handlers catch ImportError."""
    for st in body:
        if isinstance(st, (ast.Import, ast.ImportFrom)) and getattr(st, "module", None) != "__future__":
            yield from (b.module for b in index.import_bindings(info, st, False) if not b.external)
        elif isinstance(st, ast.Try) and any(catches_import_error(h) for h in st.handlers):
            for part in [h.body for h in st.handlers] + [st.orelse, st.finalbody]:
                yield from _unguarded_imports(part, index, info)
        else:
            for _, value in ast.iter_fields(st):
                if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                    yield from _unguarded_imports(value, index, info)
                elif isinstance(value, list) and value and isinstance(value[0], ast.ExceptHandler):
                    for h in value:
                        yield from _unguarded_imports(h.body, index, info)


def _what(b) -> str:
    return f"{b.module}.{b.attr}" if b.attr else b.module


def raising_stub(name: str, message: str, pad: str) -> str:
    """`def name(*args, **kwargs): raise ImportError(<message>)`, `message` a Python expression, lines joined by
    `pad` (a newline and the statement's indentation)."""
    return f"def {name}(*args, **kwargs):{pad}    raise ImportError({message})"

