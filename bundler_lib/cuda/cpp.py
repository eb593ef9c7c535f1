"""A small C/C++ reader: comments, string literals, preprocessor conditions, includes, top-level
function definitions. Only what A4 needs to locate op registrations and their sources; no full parser."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from bundler_lib.common.tristate import and3, or3

# Macros whose value is known when the bundle targets an NVIDIA GPU through nvcc.
KNOWN_FALSE = {"USE_ROCM", "__HIP__", "__HIPCC__", "__HIP_PLATFORM_AMD__", "__HIP_PLATFORM_HCC__",
               "USE_XPU", "VLLM_BUILD_CPU"}
KNOWN_TRUE = {"USE_CUDA", "__CUDACC__", "__NVCC__", "__cplusplus"}


_LITERAL_OR_COMMENT = re.compile(r'/[/*]|R"|["\']')   # where strip_comments has something to decide
_RAW_OPEN = re.compile(r'R"([^(\s]*)\(')


# A4 asks for the same file's comment-free text once per name it looks for (hundreds of times): kept per text.
@functools.lru_cache(maxsize=None)
def strip_comments(text: str) -> str:
    """Replace comments with spaces (newlines kept, so offsets and line numbers survive);
    string and char literals are kept as they are."""
    out = []
    i, n = 0, len(text)
    while i < n:
        start = _LITERAL_OR_COMMENT.search(text, i)
        if start is None:
            out.append(text[i:])
            break
        out.append(text[i:start.start()])   # nothing to decide before it: kept as it is
        i = start.start()
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "R":
            m = _RAW_OPEN.match(text, i) if i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_") else None
            if m:
                end = text.find(")" + m.group(1) + '"', m.end())
                end = n if end < 0 else end + len(m.group(1)) + 2
                out.append(text[i:end])
                i = end
            else:
                out.append(c)
                i += 1
        else:   # a string or char literal
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(text[i:j])
            i = j
    return "".join(out)


@functools.lru_cache(maxsize=None)
def blank_strings(text: str) -> str:
    """Replace the contents of string/char literals by spaces (the quotes stay). Input: comment-free."""
    def rep(m):
        s = m.group(0)
        return s[0] + " " * (len(s) - 2) + s[-1]
    return re.sub(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', rep, text)


# ---------------------------------------------------------------- preprocessor conditions

def _as_int(v: bool | None) -> int | None:
    """A preprocessor truth value: 1, 0, or None (unknown)."""
    return None if v is None else int(v)


def _eval_cond(expr: str, defines: dict[str, str | None]):
    """Tri-state evaluation (True, False, None=unknown) of an #if expression."""
    expr = expr.strip()
    toks = re.findall(r"defined\s*\(\s*\w+\s*\)|defined\s+\w+|\|\||&&|!=|==|>=|<=|[()!<>]|\w+|\S", expr)
    try:
        v = _Condition(toks, defines).orexpr()
    except Exception:
        return None
    return None if v is None else bool(v)


_COMPARE = {"==": lambda v, w: v == w, "!=": lambda v, w: v != w, ">=": lambda v, w: v >= w,
            "<=": lambda v, w: v <= w, "<": lambda v, w: v < w, ">": lambda v, w: v > w}


class _Condition:
    """A recursive-descent reading of an #if expression's tokens (||, &&, comparisons, !, defined, macros,
    integers); each value is 1, 0 or None (unknown)."""

    def __init__(self, toks: list[str], defines: dict[str, str | None]):
        self.toks = toks
        self.pos = 0
        self.defines = defines

    def peek(self):
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self):
        t = self.toks[self.pos]
        self.pos += 1
        return t

    def orexpr(self):
        v = self.andexpr()
        while self.peek() == "||":
            self.take()
            w = self.andexpr()
            v = _as_int(or3(v, w))
        return v

    def andexpr(self):
        v = self.cmp()
        while self.peek() == "&&":
            self.take()
            w = self.cmp()
            v = _as_int(and3(v, w))
        return v

    def cmp(self):
        v = self.primary()
        while self.peek() in _COMPARE:
            op = self.take()
            w = self.primary()
            v = None if v is None or w is None else int(_COMPARE[op](v, w))
        return v

    def primary(self):
        t = self.peek()
        if t is None:
            return None
        self.take()
        if t.startswith("defined"):
            return _is_defined(re.sub(r"defined|[()\s]", "", t), self.defines)
        if t == "!":
            v = self.primary()
            return None if v is None else int(not v)
        if t == "(":
            v = self.orexpr()
            if self.peek() == ")":
                self.take()
            return v
        if re.fullmatch(r"\w+", t):
            if self.peek() == "(":  # function-like macro (e.g. __has_include): unknown
                self.skip_call()
                return None
            return _macro_value(t, self.defines)
        return None

    def skip_call(self):
        depth = 0
        while self.peek() is not None:
            x = self.take()
            depth += x == "("
            depth -= x == ")"
            if depth == 0:
                break


def _macro_value(name: str, defines: dict[str, str | None]) -> int | None:
    if name in defines:
        v = defines[name]
        if v is None or v == "":
            return 1
        try:
            return int(v.rstrip("ULul"), 0)
        except ValueError:
            return None
    if name in KNOWN_TRUE:
        return 1
    if name in KNOWN_FALSE:
        return 0
    if re.fullmatch(r"\d+[uUlL]*", name):
        return int(name.rstrip("uUlL"))
    if re.fullmatch(r"0[xX][0-9a-fA-F]+[uUlL]*", name):
        return int(name.rstrip("uUlL"), 16)
    return None


def _is_defined(name: str, defines: dict[str, str | None]) -> int | None:
    if name in defines or name in KNOWN_TRUE:
        return 1
    if name in KNOWN_FALSE:
        return 0
    return None


_DIRECTIVE = re.compile(r"^[ \t]*#[ \t]*(if|ifdef|ifndef|elif|else|endif)\b(.*)$")


def inactive_mask(text: str, defines: dict[str, str | None]) -> list[bool]:
    """Per line (0-based): True when the line is in a branch known to be inactive. Unknown conditions
    keep both branches. Input: comment-free text."""
    lines = text.split("\n")
    mask = [False] * len(lines)
    # stack entries: [parent_inactive, this_branch_inactive, some_branch_taken (True/None/False)]
    stack: list[list] = []
    for i, line in enumerate(lines):
        m = _DIRECTIVE.match(line)
        parent = stack[-1][0] or stack[-1][1] if stack else False
        if not m:
            mask[i] = parent
            continue
        kind, rest = m.group(1), m.group(2)
        if kind in ("if", "ifdef", "ifndef"):
            if kind == "if":
                v = _eval_cond(rest, defines)
            else:
                name = rest.strip().split()[0] if rest.strip() else ""
                d = _eval_cond(f"defined({name})", defines)
                v = d if kind == "ifdef" or d is None else (not d)
            stack.append([parent, v is False, v])
            mask[i] = parent
        elif kind == "elif" and stack:
            top = stack[-1]
            if top[2] is True:
                top[1] = True
            else:
                v = _eval_cond(rest, defines)
                top[1] = v is False
                if v is True and top[2] is False:
                    top[2] = True
                elif v is None:
                    top[2] = None if top[2] is not True else True
            mask[i] = top[0]
        elif kind == "else" and stack:
            top = stack[-1]
            top[1] = top[2] is True
            mask[i] = top[0]
        elif kind == "endif" and stack:
            top = stack.pop()
            mask[i] = top[0]
        else:
            mask[i] = parent
    return mask


def active_text(text: str, defines: dict[str, str | None]) -> str:
    """Comment-free text with known-inactive lines blanked (line numbers kept)."""
    t = strip_comments(text)
    mask = inactive_mask(t, defines)
    return "\n".join("" if dead else line for line, dead in zip(t.split("\n"), mask))


# ---------------------------------------------------------------- includes

@dataclass(frozen=True)
class Include:
    path: str
    angled: bool
    line: int  # 1-based


_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*([<"])([^>"]+)[>"]', re.M)


def includes(text: str, defines: dict[str, str | None]) -> list[Include]:
    t = active_text(text, defines)
    out = []
    for m in _INCLUDE.finditer(t):
        out.append(Include(m.group(2).strip(), m.group(1) == "<", t.count("\n", 0, m.start()) + 1))
    return out


# ---------------------------------------------------------------- balanced scanning

def match_close(text: str, i: int) -> int:
    """text[i] is an opening bracket; return the index of its match (text: comment- and string-blanked)."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = [pairs[text[i]]]
    j = i + 1
    while j < len(text):
        c = text[j]
        if c in pairs:
            stack.append(pairs[c])
        elif c in ")]}":
            if stack and stack[-1] == c:
                stack.pop()
                if not stack:
                    return j
        j += 1
    return -1


def split_args(s: str) -> list[str]:
    """Split a call's argument text on top-level commas (s: blanked-aware raw text is fine as long
    as strings contain balanced characters; we track string literals here)."""
    out, cur, depth, i = [], [], 0, 0
    while i < len(s):
        c = s[i]
        if c == '"':
            j = i + 1
            while j < len(s) and s[j] != '"':
                j += 2 if s[j] == "\\" else 1
            cur.append(s[i:j + 1])
            i = j + 1
            continue
        if c in "([{<" and c != "<":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return out


def string_literal_value(arg: str) -> str | None:
    """Concatenate adjacent C string literals ("a" "b") into one Python string; None if arg is not
    only string literals."""
    parts = re.findall(r'"((?:\\.|[^"\\])*)"', arg)
    rest = re.sub(r'"(?:\\.|[^"\\])*"', "", arg).strip()
    if not parts or rest:
        return None
    return "".join(bytes(p, "utf-8").decode("unicode_escape") if "\\" in p else p for p in parts)


# ---------------------------------------------------------------- function definitions

_KEYWORDS = {"if", "for", "while", "switch", "return", "sizeof", "catch", "decltype", "alignof",
             "static_assert", "defined", "__launch_bounds__", "alignas", "noexcept", "requires"}


def find_function_definitions(text: str, name: str) -> list[int]:
    """1-based lines where a free (non-member, non-lambda) function `name` is defined with a body,
    outside any function body. text: raw source."""
    t = blank_strings(strip_comments(text))
    lines = []
    for start in _call_starts(t, name):
        open_paren = t.index("(", start + len(name) - 1)
        close = match_close(t, open_paren)
        if close < 0:
            continue
        after = t[close + 1:close + 400]
        am = re.match(r"\s*(?:const\s*|noexcept\s*|override\s*|->\s*[\w:<>,\s*&]+?)*\{", after)
        if not am:
            continue
        # Must be at namespace scope: the braces before it enclose only namespaces / extern "C".
        if not _at_namespace_scope(t, start):
            continue
        # The token before the name must look like a return type (not an operator or a call).
        before = t[max(0, start - 200):start].rstrip()
        if not before or before[-1] in "=(,;{}!&|?:+-/%" and not before.endswith(("*", "&")):
            if not (before.endswith("&") or before.endswith("*")):
                continue
        prev_word = re.search(r"(\w+)\s*$", before)
        if prev_word and prev_word.group(1) in _KEYWORDS | {"else", "new", "delete", "throw", "case"}:
            continue
        lines.append(t.count("\n", 0, start) + 1)
    return lines


_NOT_BEFORE_CALL = re.compile(r"[\w:.>]")
_OPEN_PAREN = re.compile(r"\s*\(")


def calls(t: str, name: str) -> bool:
    """Whether `t` (comments stripped, strings blanked) calls or declares `name(...)`."""
    return next(_call_starts(t, name), None) is not None


def _call_starts(t: str, name: str):
    """The starts of what re.finditer(r"(?<![\\w:.>])(?:::)?<name>\\s*\\(", t) matches, found from the name's
    occurrences (a plain text search; the regex engine would try the pattern at every offset)."""
    p = t.find(name)
    while p >= 0:
        paren = _OPEN_PAREN.match(t, p + len(name))
        start = p - 2 if p >= 2 and t.startswith("::", p - 2) else p
        if paren and not (start > 0 and _NOT_BEFORE_CALL.match(t, start - 1)):
            yield start
            p = t.find(name, paren.end())
        else:
            p = t.find(name, p + 1)


def find_function_declarations(text: str) -> list[str]:
    """Names of free functions declared without a body (`void f(int x);`, `template <...> T g(...);`) at
    namespace scope, in order: what a source expects another translation unit to define. text: raw source."""
    t = blank_strings(strip_comments(text))
    out: list[str] = []
    for m in re.finditer(r"(?<![\w:.>])(\w+)\s*\(", t):
        name = m.group(1)
        if name in _KEYWORDS or name in out or name.isupper():
            continue
        open_paren = m.end() - 1
        close = match_close(t, open_paren)
        if close < 0 or not re.match(r"\s*(?:const\s*|noexcept\s*|->\s*[\w:<>,\s*&]+?)*;", t[close + 1:close + 200]):
            continue
        # a return type before the name (a word, `>`, `*` or `&`), not an operator, a call or a statement
        before = t[max(0, m.start() - 200):m.start()].rstrip()
        prev = re.search(r"(\w+|[>*&])$", before)
        if not prev or prev.group(1) in _KEYWORDS | {"else", "new", "delete", "throw", "case", "return"}:
            continue
        if not _at_namespace_scope(t, m.start()):
            continue
        out.append(name)
    return out


def _at_namespace_scope(t: str, pos: int) -> bool:
    stack = []
    i = 0
    for m in re.finditer(r"[{}]", t[:pos]):
        if m.group(0) == "{":
            head = t[max(0, m.start() - 200):m.start()]
            is_ns = bool(re.search(r'(\bnamespace(\s+[\w:]+)?|\bextern\s+"[^"\n]*")\s*$', head))
            stack.append(is_ns)
        else:
            if stack:
                stack.pop()
        i += 1
    return all(stack)
