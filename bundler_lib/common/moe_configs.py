"""A fused-MoE tuned config file as vLLM's `get_moe_configs` reads it: its name
(`E=<E>,N=<N>,device_name=<GPU>[,dtype=<d>][,block_shape=[n,k]].json`, `get_config_file_name`) and its JSON (batch
size -> the Triton kernel's parameters). A3 selects vLLM's own files by the name; a target's own files (its
`moe_configs`, which `tune-moe` writes) are checked against both, by the Pants rule before any stage runs and by A3,
which embeds them."""

from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path

from bundler_lib.errors import StageError

STAGE = "A3 collect-triton (data files)"  # data_files.py's too: the configs are A3's data files

# E=<experts>,N=<w2.shape[2]>,device_name=<name>[,dtype=<str>][,block_shape=[n,k]][,<other>].json
MOE_NAME = re.compile(r"E=(\d+),N=(\d+),device_name=(.+?)(?:,dtype=([^,]+?))?(?:,block_shape=(\[[\d,]+\]))?"
                      r"(,.+)?\.json")

MOE_TILE_KEYS = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M")
MOE_CONFIG_FORMAT = ("vLLM's format: a JSON object of batch size (\"1\", \"64\", ...) -> kernel config (integers, "
                     "with " + ", ".join(MOE_TILE_KEYS) + "), and an optional \"triton_version\" string")


def _moe_config_problem(data) -> str | None:
    if not isinstance(data, dict):
        return "is not a JSON object"
    if not isinstance(data.get("triton_version", ""), str):
        return "has a triton_version that is not a string"
    sizes = {k: v for k, v in data.items() if k != "triton_version"}
    if not sizes:
        return "has no batch size"
    for key, cfg in sizes.items():
        if not (key.isdigit() and int(key) > 0):
            return f"has key {key!r}, not a batch size"
        if not isinstance(cfg, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in cfg.values()):
            return f"has for batch size {key} a value that is not an object of integers"
        missing = [k for k in MOE_TILE_KEYS if k not in cfg]
        if missing:
            return f"has for batch size {key} no " + "/".join(missing)
    return None


def check_moe_config(path: str, raw: bytes) -> None:
    """The tuned config `path` (a workspace path) holds, as vLLM's get_moe_configs reads it; StageError naming the
    file when its name is not vLLM's `E=<E>,N=<N>,device_name=<GPU>[,dtype=<d>][,block_shape=[n,k]].json` or its
    JSON not a fused-MoE config."""
    name = posixpath.basename(path)
    if not MOE_NAME.fullmatch(name):
        raise StageError(STAGE, path, "is not named as vLLM names a fused-MoE config",
                         "name it E=<experts>,N=<w2.shape[2]>,device_name=<GPU name, spaces as _>[,dtype=<d>].json, "
                         "as tune-moe writes it")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise StageError(STAGE, path, f"is not valid JSON ({e})", "write it as tune-moe does") from None
    problem = _moe_config_problem(data)
    if problem:
        raise StageError(STAGE, path, f"{problem}: not a fused-MoE config", f"write it in {MOE_CONFIG_FORMAT}")


def load_moe_configs(folder: Path | None) -> dict[str, tuple[str, bytes]]:
    """The target's tuned fused-MoE configs under `folder` (each at its workspace path), checked: file name ->
    (workspace path, bytes)."""
    out: dict[str, tuple[str, bytes]] = {}
    if folder is None:
        return out
    for p in sorted(q for q in Path(folder).rglob("*") if q.is_file()):
        source = p.relative_to(folder).as_posix()
        raw = p.read_bytes()
        check_moe_config(source, raw)
        if p.name in out:
            raise StageError(STAGE, f"moe_configs {out[p.name][0]} and {source}", "have the same file name: the "
                             "bundle would load only one", "name one of them in the target's moe_configs")
        out[p.name] = (source, raw)
    return out
