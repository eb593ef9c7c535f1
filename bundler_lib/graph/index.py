"""The tree's modules: file <-> dotted name, parsed on demand (cached), top-level bindings."""

from __future__ import annotations

import ast
import gc
import os
from dataclasses import dataclass, field
from pathlib import Path

from bundler_lib.errors import StageError

STAGE = "A1 graph"


@dataclass
class ImportBinding:
    name: str               # the bound name
    module: str             # absolute dotted module
    attr: str | None        # `from module import attr`; None for `import module [as name]`
    external: bool
    stmt: ast.stmt          # the import statement
    top: bool               # directly at module level (not inside try/if)


@dataclass
class Stmt:
    """A top-level statement that defines names: one graph node."""
    idx: int
    node: ast.stmt
    names: list[str]
    kind: str               # function, class, assign, block
    line: int               # first line, decorators included
    end_line: int


@dataclass
class ModuleInfo:
    name: str
    path: str               # tree-relative
    source: str
    lines: list[str]
    tree: ast.Module
    future_annotations: bool
    defs: dict[str, list[Stmt]] = field(default_factory=dict)
    imports: dict[str, ImportBinding] = field(default_factory=dict)
    stars: list[str] = field(default_factory=list)
    stmts: list[Stmt] = field(default_factory=list)
    header: list[str] = field(default_factory=list)   # copyright / SPDX lines
    attached: dict[str, list[Stmt]] = field(default_factory=dict)  # `X.attr = ...` after X's definition
    has_getattr: bool = False
    is_package: bool = False
    # a name a module-level `if` binds by import: each binding with its branches ((If, in its body), outermost
    # first), from which the variant's decided tests pick (resolve.py)
    branch_imports: dict[str, list] = field(default_factory=dict)


def is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
        return True
    if isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING":
        return True
    return False


def bound_names(node: ast.AST) -> list[str]:
    """Names a (compound) top-level statement binds at module scope, imports excluded."""
    out: list[str] = []

    def targets(t):
        if isinstance(t, ast.Name):
            out.append(t.id)
        elif isinstance(t, (ast.Tuple, ast.List)):
            for e in t.elts:
                targets(e)
        elif isinstance(t, ast.Starred):
            targets(t.value)

    def walk(n):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.append(n.name)
            return
        if isinstance(n, ast.Assign):
            for t in n.targets:
                targets(t)
        elif isinstance(n, (ast.AnnAssign, ast.AugAssign)):
            if n.value is not None or isinstance(n, ast.AugAssign):
                targets(n.target)
        elif isinstance(n, (ast.For, ast.AsyncFor)):
            targets(n.target)
        elif isinstance(n, (ast.With, ast.AsyncWith)):
            for it in n.items:
                if it.optional_vars is not None:
                    targets(it.optional_vars)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            out.append(n.name)
        for child in ast.iter_child_nodes(n):
            if isinstance(child, ast.stmt) or isinstance(child, ast.ExceptHandler):
                walk(child)
            elif isinstance(child, ast.expr):
                for sub in ast.walk(child):
                    if isinstance(sub, ast.NamedExpr):
                        targets(sub.target)

    walk(node)
    seen = set()
    return [n for n in out if not (n in seen or seen.add(n))]


def overload_stubs(body: list[ast.stmt]) -> set[int]:
    """id()s of the `@typing.overload` stubs in a body that also holds their implementation: typing only,
    rebound by the implementation's definition when the body runs."""
    def stub(st):
        return any(ast.unparse(d) in ("overload", "typing.overload", "typing_extensions.overload")
                   for d in st.decorator_list)

    funcs = [st for st in body if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef))]
    implemented = {st.name for st in funcs if not stub(st)}
    return {id(st) for st in funcs if st.name in implemented and stub(st)}


def _mutated_base(st: ast.stmt) -> str | None:
    """`X.a = v`, `X[k] = v`, `X.a += v` at module level: the name X, else None."""
    if isinstance(st, ast.Assign):
        targets = st.targets
    elif isinstance(st, (ast.AugAssign, ast.AnnAssign)):
        targets = [st.target]
    else:
        return None
    bases = set()
    for t in targets:
        if not isinstance(t, (ast.Attribute, ast.Subscript)):
            return None
        while isinstance(t, (ast.Attribute, ast.Subscript)):
            t = t.value
        if not isinstance(t, ast.Name):
            return None
        bases.add(t.id)
    return bases.pop() if len(bases) == 1 else None


def _walk_runtime(node: ast.AST):
    """ast.walk, skipping the bodies of `if TYPE_CHECKING:`."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, ast.If) and is_type_checking(n.test):
            stack.extend(n.orelse)
            continue
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)) and n is not node:
            continue   # their imports are local to them
        stack.extend(c for c in ast.iter_child_nodes(n) if isinstance(c, (ast.stmt, ast.excepthandler)))


def _python_files(root: str) -> list[str]:
    """Tree-relative paths (with /) of every .py file under root."""
    out, stack = [], [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            for e in it:
                path = f"{rel}/{e.name}" if rel else e.name
                if e.is_dir(follow_symlinks=True):
                    stack.append(path)
                elif e.name.endswith(".py"):
                    out.append(path)
    return out


class TreeIndex:
    """All Python modules of the tree, by dotted name; parses only what is asked for."""

    def __init__(self, tree: Path):
        self.root = Path(tree)
        self._root_str = str(self.root)
        self.files: dict[str, str] = {}          # module -> tree-relative path
        self.packages: set[str] = set()
        self.top_packages: set[str] = set()
        for rel in sorted(_python_files(str(self.root))):
            parts = rel[:-3].split("/")
            if parts[-1] == "__init__":
                parts = parts[:-1]
                if not parts:
                    continue
                self.packages.add(".".join(parts))
            if any(not x.isidentifier() for x in parts):
                continue
            if not (self.root / parts[0] / "__init__.py").is_file():
                continue
            self.files[".".join(parts)] = rel
        for m in self.files:
            self.top_packages.add(m.split(".")[0])
        self._cache: dict[str, ModuleInfo] = {}
        self._texts: dict[str, str | None] = {}
        self.reads: set[str] = set()   # files whose content the result depends on (A1's memo records them)
        self.class_locals: dict[int, tuple] = {}   # id(ClassDef) -> its body's names (refs._class_locals)
        self._external_packages: dict[str, frozenset[str]] = {}

    def text(self, rel: str) -> str | None:
        """A file's text (cached; None when unreadable)."""
        if rel not in self._texts:
            try:
                with open(os.path.join(self._root_str, rel), encoding="utf-8") as f:
                    self._texts[rel] = f.read()
            except (OSError, UnicodeDecodeError):
                self._texts[rel] = None
        return self._texts[rel]

    def is_local(self, module: str) -> bool:
        return module.split(".")[0] in self.top_packages

    def has_module(self, module: str) -> bool:
        return module in self.files

    def distribution_version(self, package: str) -> str | None:
        """What importlib.metadata's `version(package)` would answer had the tree been installed, for a top-level
        package of the tree: the version its source was released at (`<package>/_version.py`, setuptools-scm's
        `__version__` literal); None without one."""
        if package not in self.top_packages or not self.has_module(f"{package}._version"):
            return None
        for st in self.get(f"{package}._version").tree.body:
            if (isinstance(st, ast.Assign) and isinstance(st.value, ast.Constant) and isinstance(st.value.value, str)
                    and any(isinstance(t, ast.Name) and t.id == "__version__" for t in st.targets)):
                return st.value.value
        return None

    def has_source(self, module: str) -> bool:
        """The tree has Python source for `module` (a file, or a package holding files); compiled vLLM code has
        none."""
        return module in self.files or any(m.startswith(module + ".") for m in self.files)

    def module_of_path(self, rel: str) -> str | None:
        for m, p in self.files.items():
            if p == rel:
                return m
        return None

    def get(self, module: str) -> ModuleInfo:
        info = self._cache.get(module)
        if info is None:
            info = self._parse(module)
            self._cache[module] = info
        return info

    @property
    def parsed(self) -> dict[str, ModuleInfo]:
        return self._cache

    # ---------------------------------------------------------------- parsing
    def _parse(self, module: str) -> ModuleInfo:
        rel = self.files[module]
        self.reads.add(rel)
        source = self.text(rel)
        if source is None:
            raise StageError(STAGE, rel, "unreadable (not UTF-8 text?)", "fix the file in the source tree")
        try:
            tree = ast.parse(source, filename=rel)
        except SyntaxError as e:
            raise StageError(STAGE, f"{rel}:{e.lineno}", f"syntax error in a reached file ({e.msg})",
                             "fix the file in the source tree, or pick a symbol that does not reach it") from None
        lines = source.splitlines(keepends=True)
        future = any(isinstance(s, ast.ImportFrom) and s.module == "__future__"
                     and any(a.name == "annotations" for a in s.names) for s in tree.body)
        info = ModuleInfo(name=module, path=rel, source=source, lines=lines, tree=tree,
                          future_annotations=future, is_package=rel.endswith("__init__.py"))
        for ln in lines[:30]:
            s = ln.strip()
            if not s.startswith("#"):
                if s:
                    break
                continue
            if "SPDX" in s or "opyright" in s:
                info.header.append(ln.rstrip("\n"))
        stubs = overload_stubs(tree.body)
        for i, st in enumerate(tree.body):
            if id(st) not in stubs:
                self._top(info, i, st)
        # the index keeps the tree to the end of the run and a tree holds no reference cycle (refcounting frees
        # it): move it out of the cyclic collector's reach, whose full passes otherwise walk every tree parsed so
        # far again (about a quarter of A1's CPU time)
        gc.freeze()
        return info

    def _abs_module(self, info: ModuleInfo, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        pkg = info.name.split(".") if info.is_package else info.name.split(".")[:-1]
        if node.level > 1:
            pkg = pkg[: len(pkg) - (node.level - 1)]
        base = ".".join(pkg)
        if node.module:
            return f"{base}.{node.module}" if base else node.module
        return base

    def import_bindings(self, info: ModuleInfo, node: ast.stmt, top: bool) -> list[ImportBinding]:
        out = []
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    out.append(ImportBinding(a.asname, a.name, None, not self.is_local(a.name), node, top))
                else:
                    first = a.name.split(".")[0]
                    out.append(ImportBinding(first, first if self.is_local(a.name) else a.name, None,
                                             not self.is_local(a.name), node, top))
        elif isinstance(node, ast.ImportFrom):
            mod = self._abs_module(info, node)
            for a in node.names:
                if a.name == "*":
                    continue
                out.append(ImportBinding(a.asname or a.name, mod, a.name, not self.is_local(mod), node, top))
        return out

    def external_packages(self, info: ModuleInfo) -> frozenset[str]:
        """The top-level packages outside the tree that the module imports anywhere, function bodies included."""
        found = self._external_packages.get(info.name)
        if found is None:
            found = frozenset(b.module.split(".")[0] for node in ast.walk(info.tree)
                              if isinstance(node, (ast.Import, ast.ImportFrom))
                              for b in self.import_bindings(info, node, False) if b.external)
            self._external_packages[info.name] = found
        return found

    def _branch_imports(self, info: ModuleInfo, st: ast.If, path: tuple) -> None:
        for in_body, body in ((True, st.body), (False, st.orelse)):
            for sub in body:
                if isinstance(sub, ast.If):
                    self._branch_imports(info, sub, path + ((st, in_body),))
                elif isinstance(sub, (ast.Import, ast.ImportFrom)):
                    for b in self.import_bindings(info, sub, False):
                        info.branch_imports.setdefault(b.name, []).append((b, path + ((st, in_body),)))

    def _top(self, info: ModuleInfo, i: int, st: ast.stmt) -> None:
        if isinstance(st, (ast.Import, ast.ImportFrom)):
            if isinstance(st, ast.ImportFrom) and st.module == "__future__":
                return
            if isinstance(st, ast.ImportFrom) and any(a.name == "*" for a in st.names):
                info.stars.append(self._abs_module(info, st))
                return
            for b in self.import_bindings(info, st, True):
                info.imports[b.name] = b
            return
        if isinstance(st, ast.If) and is_type_checking(st.test) and not st.orelse:
            return  # never evaluated
        if isinstance(st, (ast.Expr, ast.Pass)):
            return  # docstrings and side-effect calls are not definitions
        names = bound_names(st)
        base = _mutated_base(st)
        if base is not None and not names:
            s = Stmt(idx=i, node=st, names=[], kind="attached", line=st.lineno, end_line=st.end_lineno)
            info.stmts.append(s)
            info.attached.setdefault(base, []).append(s)
            return        # imports nested in compound statements (try/if): record them too
        if isinstance(st, ast.If):
            self._branch_imports(info, st, ())
        nested = [] if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else _walk_runtime(st)
        for sub in nested:
            if isinstance(sub, (ast.Import, ast.ImportFrom)) and sub is not st:
                for b in self.import_bindings(info, sub, False):
                    prev = info.imports.get(b.name)
                    if prev is None or (not prev.external and b.external):
                        info.imports[b.name] = b
        if not names:
            return
        if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)):
            kind = "function"
        elif isinstance(st, ast.ClassDef):
            kind = "class"
        elif isinstance(st, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            kind = "assign"
        else:
            kind = "block"
        line = st.lineno
        for d in getattr(st, "decorator_list", []) or []:
            line = min(line, d.lineno)
        s = Stmt(idx=i, node=st, names=names, kind=kind, line=line, end_line=st.end_lineno)
        info.stmts.append(s)
        for n in names:
            info.defs.setdefault(n, []).append(s)
        if "__getattr__" in names and kind == "function":
            info.has_getattr = True
