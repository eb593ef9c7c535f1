"""The stage interpreter and the bundler_lib sources each stage process runs with (its import closure)."""

from __future__ import annotations

from dataclasses import dataclass

from pants.base.glob_match_error_behavior import GlobMatchErrorBehavior
from pants.engine.fs import Digest, DigestContents, DigestSubset, PathGlobs
from pants.engine.process import Process
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.frozendict import FrozenDict

from rules.stage_sources import STAGE_MODULES, stage_sources
from rules.subsystem import BundlerSubsystem

TOOLCHAIN_DIR = ".toolchain"
RUNTIME_DIR = ".runtime"  # the bundle runtime's venv in A7's sandbox


class ToolchainMissing(Exception):
    pass


@dataclass(frozen=True)
class StageToolchain:
    cache_name: str
    packages: str  # fingerprint of the installed packages
    bundler_lib: Digest  # all of bundler_lib/
    sdist_tool: Digest  # only what `python -m bundler_lib.sdist` needs, so the download stays cached
    runtime: str = ""  # named cache of the bundle runtime (torch, triton, ninja only), for A7's import check
    runtime_packages: str = ""  # fingerprint of what it holds
    stage_sources: FrozenDict[str, Digest] = FrozenDict()  # stage name -> the bundler_lib files it imports

    def sources_for(self, stage: str) -> Digest:
        """What `python -m bundler_lib <stage>` runs: only the modules it imports (rules/stage_sources.py)."""
        return self.stage_sources.get(stage, self.bundler_lib)

    def process(
        self,
        args: tuple[str, ...],
        *,
        module: str = "bundler_lib",
        description: str,
        input_digest: Digest,
        output_directories: tuple[str, ...] = ("out",),
        extra_env: FrozenDict[str, str] = FrozenDict(),
        extra_caches: FrozenDict[str, str] = FrozenDict(),
        timeout_seconds: int = 900,
    ) -> Process:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "BUNDLER_TOOLCHAIN": self.cache_name,
            "BUNDLER_TOOLCHAIN_PACKAGES": self.packages,
            **extra_env,
        }
        return Process(
            argv=(f"{TOOLCHAIN_DIR}/bin/python", "-m", module, *args),
            description=description,
            input_digest=input_digest,
            append_only_caches=FrozenDict({self.cache_name: TOOLCHAIN_DIR, **extra_caches}),
            env=FrozenDict(env),
            output_directories=output_directories,
            timeout_seconds=timeout_seconds,
        )


@rule(desc="Prepare the stage toolchain")
async def stage_toolchain(bundler: BundlerSubsystem) -> StageToolchain:
    if not bundler.toolchain or not bundler.toolchain_packages or not bundler.runtime or not bundler.runtime_packages:
        raise ToolchainMissing(
            "[bundler].toolchain or [bundler].runtime is not set: run Pants through the repo's `./pants` launcher, "
            "which sets up the stage interpreter and the bundle runtime and sets these options."
        )
    sources = await Get(
        Digest,
        PathGlobs(
            ["bundler_lib/**/*.py"],
            glob_match_error_behavior=GlobMatchErrorBehavior.error,
            description_of_origin="the bundler plugin",
        ),
    )
    sdist_tool = await Get(
        Digest,
        PathGlobs(
            ["bundler_lib/__init__.py", "bundler_lib/errors.py", "bundler_lib/sdist.py"],
            glob_match_error_behavior=GlobMatchErrorBehavior.error,
            description_of_origin="the bundler plugin",
        ),
    )
    files = {c.path: c.content for c in await Get(DigestContents, Digest, sources)}
    stages = sorted(STAGE_MODULES)
    subsets = await MultiGet(
        Get(Digest, DigestSubset(sources, PathGlobs(stage_sources(files, s)))) for s in stages
    )
    return StageToolchain(bundler.toolchain, bundler.toolchain_packages, sources, sdist_tool,
                          bundler.runtime, bundler.runtime_packages, FrozenDict(zip(stages, subsets)))


def rules():
    return collect_rules()
