"""A6: the prefill launch of vLLM's unified attention kernel, tuned for the GPU at hand (`tune-attention`).

vLLM's TRITON_ATTN backend launches `kernel_unified_attention` for prefill (its 2D grid) with constants chosen for
decode: BLOCK_M 16 query rows (BLOCK_Q = 16 / queries per KV head tokens), KV tiles of 32, Triton's default warps and
stages; vLLM changes them for one case only (head size 256 on B200). On an H100 that launch runs at a tenth of torch
SDPA's speed at 32k tokens; vLLM itself prefills there with FlashAttention, which the sdist does not carry.

- `python <bundle>.py tune-attention` records the kernel's prefill launch the bundle's own example makes at each
  `--tokens` (one sequence), then times that launch alone (CUDA events, median of 10 after 3 warm-ups) with vLLM's
  constants first and then each BLOCK_M, TILE_SIZE, num_warps, num_stages of `_BUNDLE_ATTN_SPACE` (a launch Triton
  cannot fit is skipped; one whose output differs from vLLM's launch beyond bf16 rounding is refused), keeps the
  fastest per token count and writes them to the bundle cache as
  `attention-configs/unified_attention,device_name=<GPU>,queries_per_kv=<n>,head_size=<d>,dtype=<t>.json`.
- Every later prefill launch of the kernel in any bundle with that cache, GPU and shape takes the constants tuned for
  the largest token count not above its tokens per sequence (`_BundleAttentionLaunch`, which stands in for the
  kernel's name in the bundle); without such a file, the table shipped for the GPU and shape (attention_configs.py,
  `_BUNDLE_ATTN_SHIPPED`); fewer tokens, decode (3D) launches, neither, or `VLLM_BUNDLE_ATTENTION_TUNED=0`: vLLM's
  own launch, unchanged. BLOCK_Q and the grid follow BLOCK_M as vLLM derives them.

The helpers are plain functions, unit-tested with an injected timer, written verbatim into each bundle that
reaches the kernel (`source`).
"""

from __future__ import annotations

import inspect

from bundler_lib.common import bundle_cache
from bundler_lib.common.bundle_cache import _bundle_cache_base as _bundle_attn_cache_base  # in a bundle: its copy
from bundler_lib.example import attention_configs
# in a bundle: tune-moe's copies, written before these
from bundler_lib.example.moe_tune import _bundle_fastest, _bundle_no_gpu, _bundle_search_space, _bundle_write_configs

_BUNDLE_ATTN_KERNEL = "kernel_unified_attention"
_BUNDLE_ATTN_SHIPPED = attention_configs.SHIPPED
_BUNDLE_ATTN_SPACE = {"BLOCK_M": [128, 64, 32, 16], "TILE_SIZE": [32, 64, 128], "num_warps": [4, 8],
                      "num_stages": [1, 2, 3]}


class _BundleAttentionLaunch:
    """Stands in for vLLM's `kernel_unified_attention`: `self[grid](**kw)` launches it, a prefill (2D) launch with
    the tuned constants for its GPU, shape and tokens per sequence where the bundle cache or the shipped table has
    them (`forced`: these constants instead; `recorded`: a list that collects each prefill launch as vLLM made it)."""

    def __init__(self, kernel):
        self.kernel, self.files, self.forced, self.recorded = kernel, {}, None, None

    def __getattr__(self, name):
        return getattr(self.kernel, name)

    def __getitem__(self, grid):
        def launch(**kw):
            if kw["IS_3D"]:
                return self.kernel[grid](**kw)
            if self.recorded is not None:
                self.recorded.append((grid, dict(kw)))
            constants = self.forced if self.forced is not None else _bundle_attn_lookup(self.files, kw)
            relaunch = _bundle_attn_relaunch(grid, kw, constants) if constants else None
            if relaunch is None:
                return self.kernel[grid](**kw)
            return self.kernel[relaunch[0]](**relaunch[1])
        return launch


def _bundle_attn_relaunch(grid, kw, constants):
    """(grid, kwargs) of the 2D launch `grid`, `kw` with `constants` (BLOCK_M, TILE_SIZE, num_warps, num_stages):
    BLOCK_Q = BLOCK_M // queries per KV head and grid axis 0 = query tokens // BLOCK_Q + sequences, as vLLM's
    unified_attention derives them; None where the constants cannot serve this launch (fewer rows than queries per
    KV head; a KV tile the cache block does not divide under tensor descriptors)."""
    block_m, tile = constants["BLOCK_M"], constants["TILE_SIZE"]
    block_q = block_m // kw["num_queries_per_kv"]
    if block_q < 1 or (kw.get("USE_TD") and kw["BLOCK_SIZE"] % tile):
        return None
    kw = dict(kw, BLOCK_M=block_m, BLOCK_Q=block_q, TILE_SIZE=tile, num_warps=constants["num_warps"],
              num_stages=constants["num_stages"])
    return (kw["query_ptr"].shape[0] // block_q + kw["num_seqs"],) + tuple(grid[1:]), kw


def _bundle_attn_file_name(device_name, kw):
    """The tuned file's name for a launch `kw` on `device_name` (spaces as underscores, as vLLM names its configs)."""
    dtype = str(kw["query_ptr"].dtype).replace("torch.", "")
    return (f"unified_attention,device_name={device_name.replace(' ', '_')},queries_per_kv={kw['num_queries_per_kv']},"
            f"head_size={kw['HEAD_SIZE']},dtype={dtype}.json")


def _bundle_attn_folder():
    """The bundle cache's folder of tuned attention launches."""
    import os

    return os.path.join(_bundle_attn_cache_base(), "attention-configs")


def _bundle_attn_pick(table, tokens):
    """The constants of `table` ({tokens: constants}) for the largest token count not above `tokens`, or None."""
    fits = [t for t in table if t <= tokens]
    return table[max(fits)] if fits else None


def _bundle_attn_lookup(files, kw):
    """The tuned constants for launch `kw` from its file in the bundle cache, else from the table shipped for its GPU
    and shape (read once per GPU and shape into `files`), or None: not on a CUDA GPU, neither, or
    VLLM_BUNDLE_ATTENTION_TUNED=0."""
    import os

    q = kw["query_ptr"]
    if q.device.type != "cuda" or os.environ.get("VLLM_BUNDLE_ATTENTION_TUNED", "1") == "0":
        return None
    key = (q.device.index, kw["num_queries_per_kv"], kw["HEAD_SIZE"], q.dtype)
    if key not in files:  # once per GPU and shape
        import json

        import torch

        name = _bundle_attn_file_name(torch.cuda.get_device_name(q.device), kw)
        path = os.path.join(_bundle_attn_folder(), name)
        try:
            with open(path, encoding="utf-8") as f:
                files[key] = {int(k): v for k, v in json.load(f).items() if k.isdigit()}
        except FileNotFoundError:
            files[key] = _BUNDLE_ATTN_SHIPPED.get(name, {})
        except (ValueError, AttributeError) as e:
            raise RuntimeError(f"{path}: not a tune-attention file ({e}): delete it, or run tune-attention again to "
                               "rewrite it") from None
    return _bundle_attn_pick(files[key], q.shape[0] // max(1, kw["num_seqs"]))


def _bundle_attn_candidates(space, queries_per_kv):
    """vLLM's own launch (None) first, then every combination of `space` with at least one token per program."""
    return [None] + [c for c in _bundle_search_space(space) if c["BLOCK_M"] >= queries_per_kv]


class _BundleAttnWrongOutput(Exception):
    pass


def _bundle_attn_cuda_timer(proxy, grid, kw):
    """time_ms(constants): the recorded launch alone with `constants` (None: vLLM's), median of 10 CUDA-event-timed
    launches after 3 warm-ups, or the first timed launch alone where it takes over 1.5x the fastest median so far
    (it cannot win: the search moves on); raises _BundleAttnWrongOutput where the output differs from vLLM's
    launch's by more than bf16 rounding (2e-2 of its largest value)."""
    import statistics

    import torch

    out = kw["output_ptr"].clone()  # the example's output: an inference tensor, not to be written outside it
    kw = dict(kw, output_ptr=out)
    proxy.kernel[grid](**kw)
    ref = out.float().clone()
    tol = 2e-2 * float(ref.abs().max()) + 1e-3
    fastest = float("inf")

    def time_ms(constants):
        nonlocal fastest
        g, k = (grid, kw) if constants is None else (_bundle_attn_relaunch(grid, kw, constants) or (None, None))
        if g is None:
            raise _BundleAttnWrongOutput("not applicable")
        out.zero_()
        proxy.kernel[g](**k)
        torch.cuda.synchronize()
        if float((out.float() - ref).abs().max()) > tol:
            raise _BundleAttnWrongOutput(str(constants))
        for _ in range(2):
            proxy.kernel[g](**k)
        ts = []
        for _ in range(10):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            proxy.kernel[g](**k)
            b.record()
            b.synchronize()
            ts.append(a.elapsed_time(b))
            if len(ts) == 1 and ts[0] > 1.5 * fastest:
                return ts[0]
        median = statistics.median(ts)
        fastest = min(fastest, median)
        return median

    return time_ms


def _bundle_tune_attention(args, prog, g):
    """`tune-attention`: the fastest prefill launch constants of the bundle's unified attention kernel on this GPU,
    per token count, written where every bundle's launches read them."""
    import gc
    import os
    import sys
    import time

    if _bundle_no_gpu(prog, "tune-attention"):
        return 2
    import torch
    import triton

    proxy = g[_BUNDLE_ATTN_KERNEL]
    begin = time.monotonic()
    budget = args.budget_s if args.budget_s is not None else float("inf")
    tables = {}
    for i, tokens in enumerate(args.tokens):
        proxy.recorded = []
        try:
            g["invocation_example"](workload="prefill", tokens=tokens, batch=1)["forward"]()
        finally:
            recorded, proxy.recorded = proxy.recorded, None
        if not recorded:
            print(f"{prog} tune-attention: the example's prefill at {tokens} tokens never launched the kernel's "
                  "prefill (2D) grid", file=sys.stderr)
            return 1
        grid, kw = recorded[-1]
        start = time.monotonic()
        share = start + (begin + budget - start) / (len(args.tokens) - i)
        best, ms, before, timed, skipped = _bundle_fastest(
            _bundle_attn_candidates(_BUNDLE_ATTN_SPACE, kw["num_queries_per_kv"]),
            _bundle_attn_cuda_timer(proxy, grid, kw), share, time.monotonic,
            (triton.runtime.errors.OutOfResources, triton.compiler.errors.CompilationError, _BundleAttnWrongOutput))
        name = _bundle_attn_file_name(torch.cuda.get_device_name(), kw)
        chosen = "vLLM's own" if best is None else ",".join(f"{k}={v}" for k, v in best.items())
        print(f"tune-attention {name[:-5]} tokens={tokens}: {ms:.3f} ms with {chosen} ({before:.3f} ms with vLLM's; "
              f"timed {timed}, {skipped} skipped, {time.monotonic() - start:.1f} s)", flush=True)
        if best is not None:
            tables.setdefault(name, {})[tokens] = best
        del recorded, grid, kw
        gc.collect()
        torch.cuda.empty_cache()
    for name, table in tables.items():
        path = _bundle_write_configs(_bundle_attn_folder(), name, table, triton.__version__)
        print(f"tune-attention: wrote {path} ({len(table)} token counts, {time.monotonic() - begin:.0f} s)", flush=True)
    if not tables:
        print("tune-attention: vLLM's own launch was the fastest at every token count: no file written", flush=True)
    proxy.files.clear()
    return 0


HELPERS = (_BundleAttentionLaunch, _bundle_attn_relaunch, _bundle_attn_file_name, _bundle_attn_folder,
           _bundle_attn_pick, _bundle_attn_lookup, _bundle_attn_candidates,
           _BundleAttnWrongOutput, _bundle_attn_cuda_timer, _bundle_tune_attention)


def reaches(graph: dict) -> bool:
    """Whether a bundle of `graph` has the kernel (A1 reached it)."""
    return any(k.get("name") == _BUNDLE_ATTN_KERNEL for k in graph.get("triton_kernels") or [])


def source() -> str:
    """The helpers' text for the bundle: the constants they read, each helper verbatim, then the kernel's name bound
    to its stand-in (importing the bundle wraps the kernel object; nothing runs on a GPU)."""
    consts = "".join(f"{name} = {globals()[name]!r}\n"
                     for name in ("_BUNDLE_ATTN_KERNEL", "_BUNDLE_ATTN_SPACE", "_BUNDLE_ATTN_SHIPPED"))
    return ("\n\n" + consts + "\n\n" + bundle_cache.helper("_bundle_attn_cache_base") + "\n\n"
            + "".join(inspect.getsource(h) + "\n\n" for h in HELPERS)
            + f"{_BUNDLE_ATTN_KERNEL} = _BundleAttentionLaunch({_BUNDLE_ATTN_KERNEL})\n")
