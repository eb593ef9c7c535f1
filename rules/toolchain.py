"""The stage interpreter and the bundler_lib sources every stage process runs with."""

from __future__ import annotations

from dataclasses import dataclass

from pants.base.glob_match_error_behavior import GlobMatchErrorBehavior
from pants.engine.fs import Digest, PathGlobs
from pants.engine.process import Process
from pants.engine.rules import Get, collect_rules, rule
from pants.util.frozendict import FrozenDict

from rules.subsystem import BundlerSubsystem

TOOLCHAIN_DIR = ".toolchain"
RUNTIME_DIR = ".runtime"  # the bundle runtime's venv in A7's sandbox


class ToolchainMissing(Exception):
    pass


@dataclass(frozen=True)
class StageToolchain:
    cache_name: str
    packages: str  # fingerprint of the installed packages
    bundler_lib: Digest  # all of bundler_lib/: what the stages run
    sdist_tool: Digest  # only what `python -m bundler_lib.sdist` needs, so the download stays cached
    runtime: str = ""  # named cache of the bundle runtime (torch, triton, ninja only), for A7's import check
    runtime_packages: str = ""  # fingerprint of what it holds

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
    return StageToolchain(bundler.toolchain, bundler.toolchain_packages, sources, sdist_tool,
                          bundler.runtime, bundler.runtime_packages)


def rules():
    return collect_rules()
