"""Read the compile settings of vLLM's CUDA extensions from CMakeLists.txt and cmake/*.cmake.

A small interpreter of the few commands that matter (set, list(APPEND/REMOVE_ITEM), if/elseif/else,
define_extension_target, target_compile_definitions, target_include_directories). Conditions are
evaluated three-valued for a CUDA build: `VLLM_GPU_LANG STREQUAL "CUDA"` is true, `... "HIP"` false,
CUDA-version tests are evaluated against MIN_CUDA; anything else (GPU-arch lists, options) is unknown,
and commands under an unknown condition are not applied (they are listed in `skipped`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from bundler_lib.common.tristate import and3, or3

MIN_CUDA = (12, 0)  # the toolkit version a bundle assumes when CMake tests the CUDA version
GPU_LANG = "CUDA"


@dataclass
class Cmd:
    name: str
    args: list[str]
    file: str
    line: int


def tokenize(text: str, file: str) -> list[Cmd]:
    cmds = []
    i, n = 0, len(text)
    line = 1
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
            continue
        if c == "#":
            m = re.match(r"#\[(=*)\[", text[i:])
            if m:
                end = text.find("]" + m.group(1) + "]", i)
                end = n if end < 0 else end
                line += text.count("\n", i, end)
                i = end + 1
                continue
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        m = re.match(r"([A-Za-z_]\w*)\s*\(", text[i:])
        if not m:
            i += 1
            continue
        name = m.group(1).lower()
        start_line = line + text.count("\n", i, i + m.end())
        j = i + m.end()
        depth = 1
        args: list[str] = []
        cur = ""
        quoted = False
        while j < n and depth > 0:
            ch = text[j]
            if quoted:
                if ch == "\\" and j + 1 < n:
                    cur += text[j:j + 2]
                    j += 2
                    continue
                if ch == '"':
                    quoted = False
                    args.append(cur)
                    cur = ""
                else:
                    cur += ch
            elif ch == '"':
                quoted = True
                cur = ""
            elif ch == "#":
                k = text.find("\n", j)
                j = n if k < 0 else k
                continue
            elif ch == "(":
                depth += 1
                cur += ch
            elif ch == ")":
                depth -= 1
                if depth > 0:
                    cur += ch
                elif cur:
                    args.append(cur)
                    cur = ""
            elif ch.isspace():
                if cur:
                    args.append(cur)
                    cur = ""
            else:
                cur += ch
            j += 1
        line = start_line + text.count("\n", i + m.end(), j) if False else line + text.count("\n", i, j)
        cmds.append(Cmd(name, args, file, start_line))
        i = j
    return cmds


def _version(s: str):
    try:
        return tuple(int(x) for x in s.split(".")[:2])
    except ValueError:
        return None


def eval_cond(args: list[str], variables: dict[str, list[str]]):
    """Three-valued: True, False or None."""
    try:
        return _Condition(args, variables).orexpr()
    except Exception:
        return None


_COMPARISONS = ("STREQUAL", "VERSION_GREATER_EQUAL", "VERSION_GREATER", "VERSION_LESS", "VERSION_LESS_EQUAL",
                "VERSION_EQUAL", "EQUAL", "MATCHES")
_UNARY_TESTS = ("DEFINED", "EXISTS", "TARGET", "COMMAND", "IS_ABSOLUTE", "IS_DIRECTORY")


class _Condition:
    """A recursive-descent reading of the tokens of one if() condition: OR of ANDs of (NOT) atoms."""

    def __init__(self, args: list[str], variables: dict[str, list[str]]):
        self.toks = list(args)
        self.pos = 0
        self.variables = variables

    def peek(self):
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self):
        self.pos += 1
        return self.toks[self.pos - 1]

    def orexpr(self):
        v = self.andexpr()
        while self.peek() == "OR":
            self.take()
            w = self.andexpr()
            v = or3(v, w)
        return v

    def andexpr(self):
        v = self.atom()
        while self.peek() == "AND":
            self.take()
            w = self.atom()
            v = and3(v, w)
        return v

    def atom(self):
        t = self.peek()
        if t is None:
            return None
        if t == "NOT":
            self.take()
            v = self.atom()
            return None if v is None else (not v)
        if t == "(":
            self.take()
            v = self.orexpr()
            if self.peek() == ")":
                self.take()
            return v
        if t.startswith("(") and t.endswith(")"):
            self.take()
            return eval_cond(t[1:-1].split(), self.variables)
        self.take()
        op = self.peek()
        if op in _COMPARISONS:
            self.take()
            rhs = self.take() if self.peek() is not None else ""
            return _compare(t, op, rhs, self.variables)
        if t in _UNARY_TESTS:
            if self.peek() is not None:
                self.take()
            return None
        return True if _value_of(t) == "VLLM_GPU_LANG" else None


def _value_of(tok: str) -> str:
    return re.sub(r"^\$\{(\w+)\}$", r"\1", tok)


def _compare(t: str, op: str, rhs: str, variables: dict[str, list[str]]):
    """`t op rhs`: the GPU language, a variable of one known value or a literal, or the CUDA version."""
    lhs = _value_of(t)
    if op == "STREQUAL":
        if lhs == "VLLM_GPU_LANG":
            return rhs == GPU_LANG
        known = variables.get(lhs)
        if known is None and not t.startswith("${") and re.fullmatch(r"[A-Z_]+", t) is None:
            known = [t]  # a literal
        if known is not None and len(known) == 1:
            return known[0] == rhs
        return None
    if op.startswith("VERSION") and re.search(r"CUDA(_COMPILER)?_VERSION$", lhs):
        r = _version(rhs)
        if r is None:
            return None
        # A toolkit at least MIN_CUDA: only `>= x` with x <= MIN_CUDA is known to hold.
        if op == "VERSION_GREATER_EQUAL":
            return True if r <= MIN_CUDA else None
        if op == "VERSION_GREATER":
            return True if r < MIN_CUDA else None
        if op in ("VERSION_LESS", "VERSION_LESS_EQUAL"):
            return False if r <= MIN_CUDA else None
    return None


@dataclass
class Target:
    name: str
    sources: list[str] = field(default_factory=list)      # tree-relative, union over all branches
    language: str = ""
    flags_var: str = ""
    definitions: list[str] = field(default_factory=list)   # applied (condition true)
    include_dirs: list[str] = field(default_factory=list)


@dataclass
class BuildInfo:
    cxx_standard: str | None = None
    cuda_standard: str | None = None
    targets: dict[str, Target] = field(default_factory=dict)
    gpu_flags: list[str] = field(default_factory=list)        # VLLM_GPU_FLAGS additions that apply
    torch_flag_removals: list[str] = field(default_factory=list)  # items removed from torch's nvcc flags
    torch_flag_additions: list[str] = field(default_factory=list)
    common_include_dirs: list[str] = field(default_factory=list)
    extension_name_define: bool = False
    skipped: list[str] = field(default_factory=list)        # commands under unknown conditions
    files_read: list[str] = field(default_factory=list)

    def target_of(self, rel: str) -> Target | None:
        for t in self.targets.values():
            if rel in t.sources:
                return t
        return None


def _expand(arg: str, variables: dict[str, list[str]]) -> list[str]:
    m = re.fullmatch(r"\$\{(\w+)\}", arg)
    if m:
        return list(variables.get(m.group(1), []))
    return [arg]


def _run_block(cmds: list[Cmd], info: BuildInfo, variables: dict, union_vars: dict, functions: dict,
               cond_stack: list) -> None:
    """Interpret top-level commands (functions are recorded, not run)."""
    i = 0
    while i < len(cmds):
        c = cmds[i]
        if c.name in ("function", "macro"):
            depth, j = 1, i + 1
            while j < len(cmds) and depth:
                if cmds[j].name in ("function", "macro"):
                    depth += 1
                elif cmds[j].name in ("endfunction", "endmacro"):
                    depth -= 1
                j += 1
            if c.args:
                functions[c.args[0].lower()] = cmds[i + 1:j - 1]
            i = j
            continue
        if c.name == "if":
            cond_stack.append([eval_cond(c.args, variables), False])
            cond_stack[-1][1] = cond_stack[-1][0] is True
        elif c.name == "elseif" and cond_stack:
            top = cond_stack[-1]
            if top[1]:
                top[0] = False
            else:
                v = eval_cond(c.args, variables)
                prev_unknown = top[0] is None
                top[0] = v if not prev_unknown else (None if v is not False else None)
                top[1] = top[1] or v is True
        elif c.name == "else" and cond_stack:
            top = cond_stack[-1]
            top[0] = False if top[1] else (None if top[0] is None else True)
        elif c.name == "endif" and cond_stack:
            cond_stack.pop()
        else:
            state = _state(cond_stack)
            _apply(c, state, info, variables, union_vars)
        i += 1


def _state(cond_stack) -> bool | None:
    s = True
    for v, _ in cond_stack:
        if v is False:
            return False
        if v is None:
            s = None
    return s


def _apply(c: Cmd, state, info: BuildInfo, variables, union_vars) -> None:
    if state is False:
        return
    a = c.args
    where = f"{c.file}:{c.line}"
    # union_vars: every value a variable may hold, so the values it may take from another (a source list set
    # under a GPU-arch condition, appended to a target's sources) are expanded from theirs
    if c.name == "set" and a:
        vals = [x for arg in a[1:] for x in _expand(arg, variables) if x not in ("CACHE", "PARENT_SCOPE")]
        union_vars.setdefault(a[0], [])
        union_vars[a[0]] += [v for arg in a[1:] for v in _expand(arg, union_vars)
                             if v not in ("CACHE", "PARENT_SCOPE") and v not in union_vars[a[0]]]
        if state is True:
            variables[a[0]] = vals
            if a[0] == "CMAKE_CXX_STANDARD" and vals:
                info.cxx_standard = vals[0]
            if a[0] == "CMAKE_CUDA_STANDARD" and vals:
                info.cuda_standard = vals[0]
    elif c.name == "list" and len(a) >= 2 and a[0] == "APPEND":
        vals = [x for arg in a[2:] for x in _expand(arg, variables)]
        union_vars.setdefault(a[1], [])
        union_vars[a[1]] += [v for arg in a[2:] for v in _expand(arg, union_vars) if v not in union_vars[a[1]]]
        if state is True:
            variables.setdefault(a[1], []).extend(vals)
            if a[1] == "VLLM_GPU_FLAGS":
                info.gpu_flags.extend(vals)
        elif a[1] == "VLLM_GPU_FLAGS":
            info.skipped.append(f"{where}: list(APPEND VLLM_GPU_FLAGS {' '.join(a[2:])}) (condition not known for a bundle)")
    elif c.name == "define_extension_target" and a:
        name = a[0]
        t = info.targets.setdefault(name, Target(name))
        key = None
        for arg in a[1:]:
            if arg in ("DESTINATION", "LANGUAGE", "SOURCES", "COMPILE_FLAGS", "ARCHITECTURES",
                       "INCLUDE_DIRECTORIES", "LIBRARIES", "USE_SABI", "WITH_SOABI"):
                key = arg
                continue
            if key == "SOURCES":
                m = re.fullmatch(r"\$\{(\w+)\}", arg)
                srcs = union_vars.get(m.group(1), []) if m else [arg]
                t.sources += [s for s in srcs if s not in t.sources]
            elif key == "LANGUAGE":
                t.language = arg
            elif key == "COMPILE_FLAGS":
                m = re.fullmatch(r"\$\{(\w+)\}", arg)
                if m:
                    t.flags_var = m.group(1)
    elif c.name == "target_compile_definitions" and a:
        t = info.targets.setdefault(a[0], Target(a[0]))
        defs = [d for d in a[1:] if d not in ("PRIVATE", "PUBLIC", "INTERFACE")]
        if state is True:
            t.definitions += [d[2:] if d.startswith("-D") else d for d in defs]
        else:
            info.skipped.append(f"{where}: target_compile_definitions({a[0]} {' '.join(defs)}) (condition not known for a bundle)")


def _run_function(body: list[Cmd], info: BuildInfo, params: dict[str, list[str]]) -> tuple[list, list, list]:
    """Run get_torch_gpu_compiler_flags-like bodies: returns (removed, appended) items of the flags list."""
    removed, appended, includes = [], [], []
    stack: list = []
    for c in body:
        if c.name == "if":
            stack.append([eval_cond(c.args, params), False])
            stack[-1][1] = stack[-1][0] is True
        elif c.name == "elseif" and stack:
            top = stack[-1]
            if top[1]:
                top[0] = False
            else:
                v = eval_cond(c.args, params)
                top[0] = v
                top[1] = v is True
        elif c.name == "else" and stack:
            top = stack[-1]
            top[0] = False if top[1] else (None if top[0] is None else True)
        elif c.name == "endif" and stack:
            stack.pop()
        else:
            st = _state(stack)
            if st is not True:
                continue
            if c.name == "list" and len(c.args) >= 2 and c.args[0] == "REMOVE_ITEM":
                removed += c.args[2:]
            elif c.name == "list" and len(c.args) >= 2 and c.args[0] == "APPEND":
                appended += c.args[2:]
            elif c.name == "target_include_directories":
                includes += [x for x in c.args[1:] if x not in ("PRIVATE", "PUBLIC", "INTERFACE")
                             and "$" not in x]
            elif c.name == "target_compile_definitions":
                for d in c.args[1:]:
                    if "TORCH_EXTENSION_NAME" in d:
                        info.extension_name_define = True
    return removed, appended, includes


def read(tree: Path) -> BuildInfo:
    info = BuildInfo()
    variables: dict[str, list[str]] = {"VLLM_GPU_LANG": [GPU_LANG]}
    union_vars: dict[str, list[str]] = {}
    functions: dict[str, list[Cmd]] = {}
    files = []
    cm = tree / "cmake"
    if cm.is_dir():
        files += sorted(p for p in cm.rglob("*.cmake"))
    top = tree / "CMakeLists.txt"
    for p in files:
        rel = p.relative_to(tree).as_posix()
        info.files_read.append(rel)
        cmds = tokenize(p.read_text(encoding="utf-8", errors="replace"), rel)
        # cmake/*.cmake: only record functions (they are run when CMakeLists calls them).
        _run_block(cmds, BuildInfo(), {}, {}, functions, [])
    if top.is_file():
        info.files_read.append("CMakeLists.txt")
        cmds = tokenize(top.read_text(encoding="utf-8", errors="replace"), "CMakeLists.txt")
        _run_block(cmds, info, variables, union_vars, functions, [])
    gf = functions.get("get_torch_gpu_compiler_flags")
    if gf:
        removed, appended, _ = _run_function(gf, info, {"GPU_LANG": [GPU_LANG]})
        info.torch_flag_removals = removed
        info.torch_flag_additions = appended
    de = functions.get("define_extension_target")
    if de:
        _, _, incs = _run_function(de, info, {"ARG_LANGUAGE": [GPU_LANG], "GPU_LANG": [GPU_LANG]})
        info.common_include_dirs = [d for d in incs if (tree / d).is_dir()]
    return info
