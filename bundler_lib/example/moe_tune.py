"""A6: `python <bundle>.py tune-moe`, vLLM's fused-MoE tuning for the layer's shapes on the GPU at hand.

vLLM tunes its Triton fused-MoE kernel with `benchmarks/kernels/benchmark_moe.py --tune` (not in the sdist; read in
vLLM's repository) and ships the result as `fused_moe/configs/E=<E>,N=<N>,device_name=<GPU>[,dtype=...].json`, which
`get_moe_configs` loads by device name, E and N. This is that procedure, written here for a bundle:

- the shapes are the ones the bundle's own fused-MoE path asks for: its `invocation_example(small=True)` runs with
  `get_moe_configs` and `try_get_optimal_moe_config` recorded, so E, N, dtype and block shape are exactly the key
  the loader will look up, and top-k and the hidden size come from the same call;
- the search space is vLLM's CUDA one (`get_configs_compute_bound`: BLOCK_SIZE_M/N/K, GROUP_SIZE_M, num_warps,
  num_stages, 1,920 configs), pruned per batch size by the rules of vLLM's `prune_rocm_search_space` that are not
  AMD-specific (vLLM applies them on ROCm only; on CUDA the whole space takes hours, see `--budget-s`);
- each config is timed as vLLM's `benchmark_config` does: forced through the hook vLLM's `override_config` sets (the
  module's `_config`), 10 calls captured in one CUDA graph, 5 warm-up replays, 20 timed replays between CUDA events,
  the mean per call in microseconds; a config Triton cannot fit (`OutOfResources`) is skipped, as vLLM skips it, and
  so is one Triton's compiler fails on (a RuntimeError raised inside Triton, an MLIR pass; vLLM's tuner would stop). The
  call is the bundle's example forward at M tokens (a decoder layer: the whole layer, whose other kernels do not
  depend on the config), where vLLM times fused_topk + fused_experts on fresh random router logits per replay;
- per batch size the fastest is kept (the config the bundle uses today is timed first, so under a budget the file is
  never slower than no file), and the file is written in vLLM's format (`triton_version` first, then each M's config
  in vLLM's key order) under the name the bundle's own `get_config_file_name` gives, into the first folder the
  bundle's `get_moe_configs` checks: the bundle cache's copy of vLLM's configs folder (`_bundle_data_dir`), so the
  next run of any bundle with the same data loads it, by device name, E and N, as vLLM would.

The helpers are plain functions, unit-tested with an injected timer, and written into every bundle verbatim
(`source`); `_bundle_main` dispatches `tune-moe` to `_bundle_tune_moe`.
"""

from __future__ import annotations

import inspect

# vLLM's CUDA search space (benchmark_moe.py get_configs_compute_bound), in its key order
_BUNDLE_MOE_SPACE = {
    "BLOCK_SIZE_M": [16, 32, 64, 128, 256],
    "BLOCK_SIZE_N": [32, 64, 128, 256],
    "BLOCK_SIZE_K": [64, 128, 256],
    "GROUP_SIZE_M": [1, 16, 32, 64],
    "num_warps": [4, 8],
    "num_stages": [2, 3, 4, 5],
}
# benchmark_moe.py's batch sizes (M, tokens) when --batch-size is not given
_BUNDLE_MOE_BATCH_SIZES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 1536, 2048, 3072, 4096)
# the names the tuner needs from the bundle: vLLM's fused-MoE config lookup and its override hook
_BUNDLE_MOE_NEEDS = ("get_moe_configs", "get_config_file_name", "try_get_optimal_moe_config", "get_config", "_config")


def _bundle_search_space(ranges):
    """Every combination of `ranges` ({parameter: values}), as vLLM's get_configs_compute_bound builds it (tune-moe's
    and tune-attention's spaces)."""
    import itertools

    keys = list(ranges)
    return [dict(zip(keys, values)) for values in itertools.product(*(ranges[k] for k in keys))]


def _bundle_moe_keep(config, m, n, k, elem_bytes=2):
    """Whether vLLM's pruning (prune_rocm_configs, its rules that are not AMD's MFMA ones) keeps `config` for one
    GEMM of m rows (tokens x top-k), n columns and reduction k."""
    bm, bn, bk = config["BLOCK_SIZE_M"], config["BLOCK_SIZE_N"], config["BLOCK_SIZE_K"]
    group = config["GROUP_SIZE_M"]
    if bm * bn < 64:
        return False
    if (m * 2 < bm and bm != 16) or (n * 2 < bn and bn != 16):  # a block far larger than the matrix
        return False
    if k % (config.get("SPLIT_K", 1) * bk) != 0:  # EVEN_K
        return False
    if group * bm > m and group != 1:
        return False
    if bk * bm * elem_bytes + bk * bn * elem_bytes > 65536:  # one stage's operand tiles in shared memory
        return False
    if m >= 2048 and n >= 2048 and (bm < 64 or bn < 64 or bk < 64 or config["num_warps"] < 4):
        return False
    return True


def _bundle_moe_prune(space, batch, shape):
    """The configs of `space` vLLM's prune_rocm_search_space keeps for `batch` tokens: those either GEMM keeps
    (w13: n = 2N, k = H; w2: n = H, k = N; m = tokens x top-k), in the space's order."""
    m = batch * shape["top_k"]
    gemms = ((2 * shape["N"], shape["H"]), (shape["H"], shape["N"]))
    return [c for c in space if any(_bundle_moe_keep(c, m, n, k) for n, k in gemms)]


def _bundle_moe_candidates(space, batch, shape, baseline):
    """What to time for `batch`, in order: `baseline` (the config the bundle uses without a file) first, then the
    pruned space in a fixed shuffled order, so that a sweep cut short by the budget samples the whole space."""
    import random

    pruned = _bundle_moe_prune(space, batch, shape)
    random.Random(batch).shuffle(pruned)
    first = [dict(baseline)] if baseline else []
    return first + [c for c in pruned if c not in first]


def _bundle_fastest(candidates, time_us, deadline, clock, skip):
    """(fastest candidate, its time, the first candidate's time (None if it did not fit), candidates timed,
    candidates skipped): `time_us(candidate)` for each until `deadline` (`clock()` seconds; the first is always
    timed); a candidate raising one of `skip` is left out. Shared by tune-moe and tune-attention."""
    best, best_us, first_us, timed, skipped = None, float("inf"), None, 0, 0
    for config in candidates:
        if timed + skipped and clock() >= deadline:
            break
        try:
            us = time_us(config)
        except skip:
            skipped += 1
            continue
        if not timed + skipped:
            first_us = us
        timed += 1
        if us < best_us:
            best, best_us = config, us
    return best, best_us, first_us, timed, skipped


def _bundle_moe_ordered(config):
    """`config` in vLLM's key order (sort_config), any other key it carries (SPLIT_K) after."""
    head = [k for k in ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M", "num_warps", "num_stages")
            if k in config]
    return {**{k: config[k] for k in head}, **{k: v for k, v in config.items() if k not in head}}


def _bundle_moe_tune(shape, batches, time_us, deadline, clock, baseline_for, say, skip):
    """{M: fastest config} for one MoE shape over `batches`, sharing the time left before `deadline` evenly
    among the batch sizes still to tune (time one leaves unused goes to the next); one progress line each."""
    space = _bundle_search_space(_BUNDLE_MOE_SPACE)
    best = {}
    for i, batch in enumerate(batches):
        start = clock()
        share = start + (deadline - start) / (len(batches) - i)
        baseline = baseline_for(batch)
        cands = _bundle_moe_candidates(space, batch, shape, baseline)
        config, us, before_us, timed, skipped = _bundle_fastest(
            cands, lambda c: time_us(batch, c), share, clock, skip)
        if config is None:
            raise RuntimeError(f"tune-moe: M={batch}: none of the {skipped} configs tried fits this GPU")
        best[batch] = _bundle_moe_ordered(config)
        was = "" if not baseline or before_us is None else (
            "; the config it used before" if config == baseline else f"; {before_us:.1f} us with the config before")
        say(f"tune-moe E={shape['E']},N={shape['N']} M={batch}: {us:.1f} us with "
            + ",".join(f"{k}={v}" for k, v in best[batch].items())
            + f" (timed {timed} of {len(cands)} configs, {skipped} skipped, {clock() - start:.1f} s{was})")
    return best


def _bundle_write_configs(folder, file_name, configs, triton_version):
    """Writes `configs` ({M: config}) as vLLM's save_configs does (`triton_version` first, indent 4) to
    `folder/file_name`, replacing any earlier file whole; returns its path (tune-moe's and tune-attention's files)."""
    import json
    import os
    import tempfile

    os.makedirs(folder, exist_ok=True)
    body = {"triton_version": triton_version, **{str(m): configs[m] for m in sorted(configs)}}
    fd, tmp = tempfile.mkstemp(prefix=".tune-", suffix=".json", dir=folder)
    with os.fdopen(fd, "w") as f:
        json.dump(body, f, indent=4)
        f.write("\n")
    path = os.path.join(folder, file_name)
    os.replace(tmp, path)
    return path


class _BundleMoeFound(Exception):
    pass


class _BundleMoeCompileFailed(Exception):
    pass


def _bundle_moe_compile_failures(time_us):
    """`time_us` with a RuntimeError raised inside Triton's own package (its compiler: an MLIR pass failing on one
    config, "PassManager::run failed", seen on an H200 for E=160,N=2560 beyond M=1024) raised as
    _BundleMoeCompileFailed, which the tuner skips like a config that does not fit; any other error stays one."""
    import traceback

    def timed(batch, config):
        try:
            return time_us(batch, config)
        except RuntimeError as e:
            frames = traceback.extract_tb(e.__traceback__)
            if frames and "/triton/" in frames[-1].filename.replace("\\", "/"):
                raise _BundleMoeCompileFailed(f"{e}") from e
            raise

    return timed


def _bundle_moe_folder(get_moe_configs, key, file_name):
    """The folder the bundle's own `get_moe_configs` checks first for `file_name`, found by running it (its
    uncached body) with os.path.exists recording the paths it asks about and stopping at the first of that name."""
    import os

    exists = os.path.exists

    def probe(path):
        if os.path.basename(str(path)) == file_name:
            raise _BundleMoeFound(os.path.dirname(str(path)))
        return exists(path)

    os.path.exists = probe
    try:
        getattr(get_moe_configs, "__wrapped__", get_moe_configs)(*key)
    except _BundleMoeFound as found:
        return found.args[0]
    finally:
        os.path.exists = exists
    raise RuntimeError(f"tune-moe: the bundle's get_moe_configs never looks for {file_name}")


def _bundle_moe_shapes(g, run_example):
    """The fused-MoE lookups `run_example()` makes through the bundle's globals `g`: [(key, call)], key the
    arguments of get_moe_configs (E, N, dtype, block_n, block_k), call the arguments of the
    try_get_optimal_moe_config call that made it (name -> value), one per distinct key."""
    import inspect

    lookup, optimal, seen = g["get_moe_configs"], g["try_get_optimal_moe_config"], {}
    sig, calls = inspect.signature(optimal), []

    def record_optimal(*a, **kw):
        calls.append(sig.bind(*a, **kw).arguments)
        return optimal(*a, **kw)

    def record_lookup(*key):
        seen.setdefault(key, dict(calls[-1]))
        return lookup(*key)

    g["get_moe_configs"], g["try_get_optimal_moe_config"] = record_lookup, record_optimal
    try:
        run_example()
    finally:
        g["get_moe_configs"], g["try_get_optimal_moe_config"] = lookup, optimal
    return list(seen.items())


def _bundle_moe_shape(key, call):
    """E, N, hidden size and top-k of one lookup."""
    return {"E": key[0], "N": key[1], "H": tuple(call["w1_shape"])[-1], "top_k": call["top_k"]}


def _bundle_moe_cuda_timer(g):
    """time_us(M, config): the bundle's example forward at M tokens with `config` forced through vLLM's override
    hook, timed as vLLM's benchmark_config does (10 calls in one CUDA graph, 5 warm-up replays, 20 timed replays)."""
    import gc

    import torch

    built = {}

    def time_us(batch, config):
        if built.get("M") != batch:
            built.clear()
            gc.collect()  # the previous example's layer and weights (a decoder layer's state holds cycles)
            torch.cuda.empty_cache()
            built.update(M=batch, forward=g["invocation_example"](workload="prefill", tokens=batch, batch=1)["forward"])
        g["_config"] = config
        try:
            graph, _ = g["_bundle_cuda_graph"](lambda: [built["forward"]() for _ in range(10)], warmup=1)
        finally:
            g["_config"] = None
        for _ in range(5):
            graph.replay()
        total = 0.0
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for _ in range(20):
            torch.cuda.synchronize()
            start.record()
            graph.replay()
            end.record()
            end.synchronize()
            total += start.elapsed_time(end)
        graph.reset()
        return total / (20 * 10) * 1000.0

    return time_us


def _bundle_moe_baseline(g, call):
    """baseline_for(M): the config the bundle's try_get_optimal_moe_config gives for M now (a tuned file's, else
    get_default_config's)."""
    def baseline_for(batch):
        return g["try_get_optimal_moe_config"](**dict(call, M=batch))
    return baseline_for


def _bundle_no_gpu(prog, command):
    """True, after one line on stderr, where there is no CUDA GPU: tuning times kernels on the GPU they are for."""
    import sys

    import torch

    if torch.cuda.is_available():
        return False
    print(f"{prog} {command}: no CUDA GPU (torch.cuda.is_available() is False): tuning times the kernel on the GPU "
          "it is for; run it there", file=sys.stderr)
    return True


def _bundle_tune_moe(args, prog, g):
    """`tune-moe`: tune the bundle's fused-MoE shapes on this GPU and write vLLM's config file for each."""
    import sys
    import time

    missing = [n for n in _BUNDLE_MOE_NEEDS if n not in g]
    if missing:
        print(f"{prog} tune-moe: this bundle has no vLLM fused MoE (Triton) path (no {', '.join(missing)}): "
              "build one whose symbol reaches fused_experts / FusedMoE", file=sys.stderr)
        return 2
    if _bundle_no_gpu(prog, "tune-moe"):
        return 2
    import triton

    begin = time.monotonic()
    deadline = begin + (args.budget_s if args.budget_s is not None else float("inf"))
    lookups = _bundle_moe_shapes(g, lambda: g["invocation_example"](small=True))
    if not lookups:
        print(f"{prog} tune-moe: the bundle's example never looked up a fused-MoE config", file=sys.stderr)
        return 2
    timer = _bundle_moe_compile_failures(_bundle_moe_cuda_timer(g))
    try:
        _bundle_moe_each(g, lookups, args, begin, deadline, timer, triton)
    except RuntimeError as e:  # no config fits, or the loader never looks for the file: one line
        print(f"{prog} {e}", file=sys.stderr)
        return 1
    return 0


def _bundle_moe_each(g, lookups, args, begin, deadline, timer, triton):
    """Tunes each looked-up shape in its share of the time left and writes its file; one line per file."""
    import time

    for i, (key, call) in enumerate(lookups):
        own = begin + (deadline - begin) * (i + 1) / len(lookups) if args.budget_s is not None else deadline
        best = _bundle_moe_tune(_bundle_moe_shape(key, call), args.batch_sizes, timer, own, time.monotonic,
                                _bundle_moe_baseline(g, call), lambda line: print(line, flush=True),
                                (triton.runtime.errors.OutOfResources, triton.compiler.errors.CompilationError,
                                 _BundleMoeCompileFailed))
        name = g["get_config_file_name"](key[0], key[1], key[2], [key[3], key[4]] if key[3] and key[4] else None)
        folder = _bundle_moe_folder(g["get_moe_configs"], key, name)
        path = _bundle_write_configs(folder, name, best, triton.__version__)
        print(f"tune-moe: wrote {path} ({len(best)} batch sizes, {time.monotonic() - begin:.0f} s)", flush=True)


HELPERS = (_bundle_search_space, _bundle_moe_keep, _bundle_moe_prune, _bundle_moe_candidates,
           _bundle_fastest, _bundle_moe_ordered, _bundle_moe_tune, _bundle_write_configs, _BundleMoeFound,
           _BundleMoeCompileFailed, _bundle_moe_compile_failures,
           _bundle_moe_folder, _bundle_moe_shapes, _bundle_moe_shape, _bundle_moe_cuda_timer, _bundle_moe_baseline,
           _bundle_no_gpu, _bundle_tune_moe, _bundle_moe_each)


def source() -> str:
    """The helpers' text for the bundle: the constants they read, then each helper verbatim."""
    consts = "".join(f"{name} = {globals()[name]!r}\n"
                     for name in ("_BUNDLE_MOE_SPACE", "_BUNDLE_MOE_BATCH_SIZES", "_BUNDLE_MOE_NEEDS"))
    return "\n\n" + consts + "\n\n" + "".join(inspect.getsource(h) + "\n\n" for h in HELPERS)
