"""The einops replacement a bundle embeds (bundler_lib/common/einops_fallback.py): its results against torch
written by hand (always) and against einops itself (where it is installed), its refusals, and its emission."""

import sys

import pytest
import torch

from bundler_lib.common import einops_fallback as F
from bundler_lib.common.imports import embedded_definition, external_statements

X = torch.arange(2 * 3 * 4 * 6).reshape(2, 3, 4, 6)

# (operation, pattern, axis sizes, the same computation in torch)
BY_HAND = [
    ("rearrange", "b s h d -> b h s d", {}, lambda x: x.permute(0, 2, 1, 3)),
    ("rearrange", "b s ... -> (b s) ...", {}, lambda x: x.reshape(6, 4, 6)),
    ("rearrange", "b s h d -> b s (h d)", {}, lambda x: x.reshape(2, 3, 24)),
    ("rearrange", "b s h d -> (h d) b s", {}, lambda x: x.permute(2, 3, 0, 1).reshape(24, 2, 3)),
    ("rearrange", "... (g d) -> ... g d", {"d": 2}, lambda x: x.reshape(2, 3, 4, 3, 2)),
    ("rearrange", "... (p n) -> ... p n", {"n": 3}, lambda x: x.reshape(2, 3, 4, 2, 3)),
    ("rearrange", "b s h (d r) -> b s h r d", {"r": 2}, lambda x: x.reshape(2, 3, 4, 3, 2).transpose(3, 4)),
    ("rearrange", "a b c d -> 1 a (b c) 1 d ()", {}, lambda x: x.reshape(1, 2, 12, 1, 6, 1)),
    ("rearrange", "a ... d -> d (...) a", {}, lambda x: x.permute(3, 1, 2, 0).reshape(6, 12, 2)),
    ("rearrange", "... -> ...", {}, lambda x: x),
    ("rearrange", "a b c d ... -> d c b a ...", {}, lambda x: x.permute(3, 2, 1, 0)),
    ("rearrange", "(a1 a2) b c d -> a2 b c (d a1)", {"a1": 2},
     lambda x: x.reshape(2, 1, 3, 4, 6).permute(1, 2, 3, 4, 0).reshape(1, 3, 4, 12)),
    ("rearrange", "a b c d -> (a b c d)", {}, lambda x: x.flatten()),
    ("rearrange", "a b (c) d -> a (b c d)", {}, lambda x: x.reshape(2, 72)),
    ("rearrange", "a b c (d1 d2) -> a b c d2 d1", {"d1": 2, "d2": 3},
     lambda x: x.reshape(2, 3, 4, 2, 3).transpose(3, 4)),
    ("repeat", "a b c d -> a b r c d", {"r": 2}, lambda x: x.unsqueeze(2).expand(2, 3, 2, 4, 6)),
    ("repeat", "a b c d -> (a 2) b c d", {}, lambda x: x.repeat_interleave(2, dim=0)),
    ("repeat", "a b c d -> (2 a) b c d", {}, lambda x: x.repeat(2, 1, 1, 1)),
    ("repeat", "... d -> ... (d r)", {"r": 3}, lambda x: x.repeat_interleave(3, dim=-1)),
    ("repeat", "a b c d -> d c b a k", {"k": 2}, lambda x: x.permute(3, 2, 1, 0).unsqueeze(-1).expand(6, 4, 3, 2, 2)),
    ("repeat", "a b c d -> a b c d", {}, lambda x: x),
    ("rearrange", "a b c d -> b (c a) d", {}, lambda x: x.permute(1, 2, 0, 3).reshape(3, 8, 6)),
    ("rearrange", "a b c (h d) -> a b (c d) h", {"h": 3},
     lambda x: x.reshape(2, 3, 4, 3, 2).permute(0, 1, 2, 4, 3).reshape(2, 3, 8, 3)),
    ("rearrange", "a b c d -> (a b) (c d)", {"a": 2, "b": 3}, lambda x: x.reshape(6, 24)),
    ("rearrange", "(a b) c d e -> a b c d e", {"b": 1}, lambda x: x.reshape(2, 1, 3, 4, 6)),
    ("repeat", "a b c d -> a (b r1) c (d r2)", {"r1": 2, "r2": 3},
     lambda x: x.repeat_interleave(2, dim=1).repeat_interleave(3, dim=3)),
    ("repeat", "a b c d -> (a 3) (b 2) c d", {}, lambda x: x.repeat_interleave(3, dim=0).repeat_interleave(2, dim=1)),
]


@pytest.mark.parametrize("op,pattern,sizes,torch_fn", BY_HAND, ids=[c[1] for c in BY_HAND])
def test_matches_torch_by_hand(op, pattern, sizes, torch_fn):
    got = getattr(F, op)(X, pattern, **sizes)
    want = torch_fn(X)
    assert got.shape == want.shape and torch.equal(got, want)


def test_lists_and_vllm_shapes():
    assert torch.equal(F.rearrange([X[0], X[1]], "n a b c -> n (a b c)"), X.reshape(2, 72))
    v = torch.randn(5, 8)  # gated delta-net: "l (h d) -> 1 l h d"
    assert torch.equal(F.rearrange(v, "l (h d) -> 1 l h d", d=2), v.reshape(1, 5, 4, 2))
    assert torch.equal(F.repeat(torch.arange(3), "n -> n d", d=4), torch.arange(3)[:, None].expand(3, 4))
    w = torch.randn(7)  # deepseek_vl2: "d -> h 1 d"
    assert torch.equal(F.repeat(w, "d -> h 1 d", h=2), w.expand(2, 1, 7))
    assert F.rearrange(torch.zeros(0, 4), "t (h d) -> t h d", h=2).shape == (0, 2, 2)


REFUSED = [
    ("rearrange", "a b c d -> a b c d e", {}),       # an axis on one side only
    ("rearrange", "a b c -> a b c", {}),             # wrong number of dimensions
    ("rearrange", "(a b) c d e -> a b c d e", {}),   # two unknown sizes in one group
    ("rearrange", "a b c d -> a b c d", {"a": 3}),   # a size that disagrees with the shape
    ("rearrange", "a b c (d r) -> a b c d r", {"r": 4}),  # 6 does not split into 4s
    ("rearrange", "a b c d -> a b (c d", {}),        # unbalanced parentheses
    ("rearrange", "a b c d) -> a b c d", {}),
    ("rearrange", "a b ((c d)) -> a b c d", {}),     # nesting
    ("rearrange", "a b c. d -> a b c d", {}),        # a stray dot
    ("rearrange", "a b c .... -> a b c", {}),
    ("rearrange", "a ... ... -> a", {}),             # two ellipses
    ("rearrange", "a (...) -> a ...", {}),           # an ellipsis in parentheses on the left
    ("rearrange", "a b c (...) -> a b c ...", {}),
    ("rearrange", "a ... -> a", {}),                 # an ellipsis on one side only
    ("rearrange", "a a c d -> a c d", {}),           # duplicate axes
    ("rearrange", "_a b c d -> _a b c d", {}),       # names may not start or end with _
    ("rearrange", "a b c d_ -> a b c d_", {}),
    ("rearrange", "a b c d -> a b c 2 d", {}),       # anonymous axes in rearrange
    ("rearrange", "a b c (d 2) -> a b c d", {}),
    ("rearrange", "a b c d -> a b c d", {"e": 2}),   # a size for an axis the pattern lacks
    ("rearrange", "a b c d -> a, b, c, d", {}),      # unknown characters
    ("rearrange", "a-b c d e -> a b c d e", {}),
    ("rearrange", "a\tb c d -> a b c d", {}),       # only spaces separate axes
    ("rearrange", "a b c d", {}),                    # no arrow
    ("rearrange", "a b c d -> a b c d -> a b c d", {}),
    ("repeat", "a b c d -> a b c", {}),              # repeat drops an axis
    ("repeat", "a b c d -> a b c d r", {}),          # a new axis without its size
    ("repeat", "a b c (d 2) -> a b c d", {}),        # anonymous axes on repeat's left
    ("repeat", "a b c d -> a b c d 0", {}),          # a zero-sized anonymous axis
    ("repeat", "b c d -> b c d ...", {}),            # an ellipsis on the right only
]


@pytest.mark.parametrize("op,pattern,sizes", REFUSED, ids=[c[1] for c in REFUSED])
def test_refuses_what_einops_refuses_naming_the_pattern(op, pattern, sizes):
    with pytest.raises(F.EinopsError) as e:
        getattr(F, op)(X, pattern, **sizes)
    assert f"{op} pattern {pattern!r}" in str(e.value)


def test_refuses_what_is_not_a_tensor():
    with pytest.raises(F.EinopsError, match="torch tensors only, not ndarray"):
        F.rearrange(pytest.importorskip("numpy").zeros((2, 3)), "a b -> b a")


@pytest.mark.parametrize("op,pattern,sizes", [c[:3] for c in BY_HAND] + REFUSED)
def test_same_as_einops(op, pattern, sizes):
    """The same cases against einops itself (not in the toolchain: run with einops on PYTHONPATH)."""
    einops = pytest.importorskip("einops")
    try:
        want = getattr(einops, op)(X, pattern, **sizes)
    except (einops.EinopsError, ValueError):
        with pytest.raises(F.EinopsError):
            getattr(F, op)(X, pattern, **sizes)
        return
    got = getattr(F, op)(X, pattern, **sizes)
    assert got.shape == want.shape and torch.equal(got, want)


def test_embedded_function_is_the_module():
    ns = {}
    exec(compile(embedded_definition("einops"), "bundle", "exec"), ns)
    einops = ns["_bundled_einops"]()
    assert sorted(vars(einops)) == sorted(F.__all__)
    assert ns["_bundled_einops"].__doc__ == F.__doc__
    assert torch.equal(einops.repeat(X, "a b c d -> a b c (d r)", r=2), F.repeat(X, "a b c d -> a b c (d r)", r=2))
    with pytest.raises(einops.EinopsError, match="'a -> b'"):
        einops.rearrange(X, "a -> b")


def test_emitted_guards_bind_every_name_without_einops(monkeypatch):
    monkeypatch.setitem(sys.modules, "einops", None)  # `import einops` raises ImportError
    stmts = ["import einops", "import einops as E", "from einops import rearrange",
             "from einops import rearrange as r, repeat", "from einops import einsum", "import torch"]
    out, notes = external_statements(stmts, runtime_only=set())
    assert sum(s.startswith("def _bundled_einops():") for s in out) == 1
    assert out.index(embedded_definition("einops")) == 0
    # einsum is not in the replacement: the import stays a plain optional guard, its name the absent package's stand-in
    assert ("try:\n    from einops import einsum\nexcept ImportError:  # optional package\n"
            "    einsum = _bundle_absent('einops', 'einops.einsum')") in out
    ns = {}
    exec("\n".join(out), ns)
    assert {n: callable(getattr(ns[n], "rearrange", ns[n])) for n in ("einops", "E", "rearrange", "r", "repeat")} \
        == dict.fromkeys(("einops", "E", "rearrange", "r", "repeat"), True)
    with pytest.raises(ModuleNotFoundError, match="einops.einsum needs the package 'einops'"):
        ns["einsum"]("i,i->", 1, 1)
    assert ns["rearrange"](X, "a b c d -> d c b a").shape == (6, 4, 3, 2)
    assert any("_bundled_einops" in n and "from einops import rearrange" in n for n in notes)


def test_a5_merges_the_sections_with_one_definition_before_every_guard(monkeypatch):
    from bundler_lib.bind.stage import _stmt_list, merge_imports
    monkeypatch.setitem(sys.modules, "einops", None)
    a3, _ = external_statements(["from einops import rearrange", "import torch"], runtime_only=set())
    a2, _ = external_statements(["import einops", "from einops import rearrange"], runtime_only=set())
    text = "\n".join(merge_imports(_stmt_list(a3, "A3.manifest.json imports"),
                                   _stmt_list(a2, "A2.manifest.json external_reqs")))
    assert text.count("def _bundled_einops():") == 1
    assert text.index("def _bundled_einops():") < text.index("try:\n    from einops import rearrange")
    ns = {}
    exec(text, ns)
    assert torch.equal(ns["einops"].rearrange(X, "a b c d -> (a b) c d"), X.reshape(6, 4, 6))


def test_sizes_must_be_positive_ints_or_symbolic():
    for bad in (2.0, True, "2", 0):
        with pytest.raises(F.EinopsError, match="must be a positive int"):
            F.rearrange(X, "(a1 a2) b c d -> a1 a2 b c d", a1=bad)
    # under torch.compile with dynamic shapes a size read from a shape is a SymInt
    compiled = torch.compile(lambda x: F.rearrange(x, "(a n) d -> a n d", n=x.shape[0] // 2), dynamic=True,
                             backend="eager", fullgraph=True)
    assert torch.equal(compiled(torch.arange(12).reshape(6, 2)), torch.arange(12).reshape(2, 3, 2))
    # traced with symbolic shapes, the size is a torch.SymInt (not an int)
    from torch.fx.experimental.proxy_tensor import make_fx
    traced = make_fx(lambda x: F.rearrange(x, "(a n) d -> a n d", n=x.shape[0] // 2), tracing_mode="symbolic")
    assert torch.equal(traced(torch.arange(12).reshape(6, 2))(torch.arange(12).reshape(6, 2)),
                       torch.arange(12).reshape(2, 3, 2))
