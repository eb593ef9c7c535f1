"""A temporary Pants workspace: a copy of this repo's plugin and stages, with BUILD files of the test's
own, driven through the real `./pants` launcher. Results carry Pants' own counters (`--stats-log`)
and the stage processes that really executed (the `Starting: A<n>` lines Pants logs when it runs one)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COPIED = ("pants", "pants.toml", "BUILD", "rules", "bundler_lib", "3rdparty", "models", "cache")
TREE_PARTS = ("vllm", "csrc", "cmake", "CMakeLists.txt", "LICENSE")
_COUNTER = re.compile(r"^\s+(\w+): (\d+)$", re.M)
_STARTED = re.compile(r"\[INFO\] Starting: (A\d) ")
WROTE = re.compile(r"WROTE (\S+) size=(\d+) sha256=([0-9a-f]{64})")


@dataclass
class PantsRun:
    returncode: int
    stdout: str
    stderr: str
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def executed_stages(self) -> list[str]:
        return sorted(_STARTED.findall(self.stderr))

    @property
    def executed(self) -> int:
        return self.counters["local_execution_requests"]

    def wrote(self) -> list[tuple[str, int, str]]:
        return [(p, int(s), h) for p, s, h in WROTE.findall(self.stderr + self.stdout)]


class Workspace:
    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for name in COPIED:
            src = REPO / name
            if src.is_dir():
                shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, root / name)

    def write(self, relpath: str, text: str) -> Path:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def write_targets(self, text: str) -> Path:
        """`text` as targets/BUILD, with the repo's targets/data/ beside it (the files its targets name)."""
        if not (self.root / "targets/data").exists():
            shutil.copytree(REPO / "targets/data", self.root / "targets/data")
        return self.write("targets/BUILD", text)

    def add_tree(self, relpath: str, tree: Path) -> Path:
        """Copy the parts of a vLLM tree the stages read to `relpath` (a local checkout)."""
        dest = self.root / relpath
        for part in TREE_PARTS:
            src = tree / part
            if src.is_dir():
                shutil.copytree(src, dest / part)
            elif src.exists():
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / part)
        return dest

    def pants(self, *args: str, pantsd: bool = False, timeout: int = 1800) -> PantsRun:
        # The developer's own Pants and team-cache settings must not change what a test counts.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PANTS_", "VLLM_BUNDLER_REMOTE_CACHE"))}
        proc = subprocess.run(
            ["./pants", "--pantsd" if pantsd else "--no-pantsd", "--stats-log", *args],
            cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout,
        )
        counters = {k: int(v) for k, v in _COUNTER.findall(proc.stderr)}
        return PantsRun(proc.returncode, proc.stdout, proc.stderr, counters)
