"""Where a `monolithic_bundle` writes, checked at rule time before any stage runs.

Each bundle target claims two paths under the dist dir (`bundles_out/`), three with `kernelbench=True`:
- its bundle, `output_path` (default `<symbol>.py`): relative, normalised, no `..`, a `.py` file whose name is a
  valid module name;
- its artifacts directory, `artifacts/<spec path with / as .>.<target name>/` beside the bundle (`<target name>`
  for a target of the root BUILD file), unique per target address;
- with `kernelbench=True`, its KernelBench problem `<bundle stem>.kernelbench.py` beside the bundle;
and keeps its builds in `.bundles/<target name>.<address hash>/` (rules/write_out.py, bundler_lib/artifacts.py).

Two targets collide when a path one claims equals a path the other claims, or lies inside it (a bundle under
another's artifacts directory). `pants package` refuses a target that collides with any other bundle target of
the repository, whether or not that one is packaged too (the two would overwrite each other's output, whichever
ran last winning), before any of its stages runs; the error names both targets. Targets that collide with
nothing still build (`./pants package targets:one` works while two other targets collide); in an invocation
that packages a colliding target the goal fails at once, and Pants stops the others. (A rule cannot see which
targets the invocation packages in Pants 2.17: the `Specs` behind them are not in scope of `BuiltPackage`.)
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass

from pants.engine.addresses import Address
from pants.engine.rules import collect_rules, rule
from pants.engine.target import AllTargets

from bundler_lib.example.kernelbench import SUFFIX as KERNELBENCH_SUFFIX
from rules.target_types import KernelBenchField, MonolithicBundle, OutputPathField, SymbolField


class BundleTargetError(Exception):
    """A bad `monolithic_bundle` field: one line naming the target, the field and the remedy."""


@dataclass(frozen=True)
class BundleLayout:
    address: Address
    bundle_path: str  # relative to the dist dir
    artifacts_dir: str  # relative to the dist dir
    store_dir: str  # relative to the dist dir: this target's builds, one directory each
    kernelbench_path: str | None = None  # relative to the dist dir, with `kernelbench=True`

    def claims(self) -> tuple[str, ...]:
        extra = (self.kernelbench_path,) if self.kernelbench_path else ()
        return (self.bundle_path, self.artifacts_dir, *extra)


def _is_module_name(stem: str) -> bool:
    return stem.isidentifier() and stem.isascii()


def check_output_path(address: Address, output_path: str | None, symbol: str) -> str:
    """The bundle's path relative to the dist dir, or BundleTargetError (one line)."""
    if output_path is None:
        path = f"{symbol}.py"
        if not _is_module_name(symbol):
            raise BundleTargetError(
                f"{address}: `symbol` {symbol!r} is no Python name, so the default bundle name {path!r} is no valid "
                "module name. Remedy: fix `symbol`, or set `output_path`.")
        return path
    problem = None
    norm = posixpath.normpath(output_path) if output_path else ""
    parts = output_path.split("/")
    if not output_path:
        problem = "is empty"
    elif output_path.startswith("/") or "\\" in output_path:
        problem = "is not a relative POSIX path"
    elif ".." in parts:
        problem = "contains `..`"
    elif norm != output_path or "." in parts or "" in parts:
        problem = f"is not normalised (it means {norm!r})"
    elif not output_path.endswith(".py"):
        problem = "does not end with `.py`"
    elif not _is_module_name(posixpath.basename(output_path)[:-3]):
        problem = f"names {posixpath.basename(output_path)!r}, which is no valid Python module name"
    elif parts[0] in ("artifacts", ".bundles") or any(p.startswith(".") for p in parts):
        problem = "lies under `artifacts/`, `.bundles/` or a hidden directory, where builds are kept"
    if problem:
        raise BundleTargetError(
            f"{address}: `output_path` {output_path!r} {problem}. Remedy: give a relative path under the dist dir "
            "without `..`, ending in a module name and `.py`, such as 'vllm-0.33.0/RMSNorm.py'.")
    return output_path


def artifacts_key(address: Address) -> str:
    spec = address.spec_path.replace("/", ".")
    return f"{spec}.{address.target_name}" if spec else address.target_name


def bundle_layout(address: Address, symbol: str, output_path: str | None, kernelbench: bool = False) -> BundleLayout:
    bundle_path = check_output_path(address, output_path, symbol)
    out_dir = posixpath.dirname(bundle_path)
    artifacts_dir = posixpath.join(out_dir, "artifacts", artifacts_key(address))
    digest = hashlib.sha256(address.spec.encode("utf-8")).hexdigest()[:12]
    kernelbench_path = bundle_path[:-len(".py")] + KERNELBENCH_SUFFIX if kernelbench else None
    return BundleLayout(address, bundle_path, artifacts_dir, f".bundles/{address.target_name}.{digest}",
                        kernelbench_path)


def _overlap(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def collision(layouts: list[BundleLayout], mine: BundleLayout) -> str | None:
    """The one-line refusal when `mine` claims a path another layout claims (or one inside it), else None."""
    for other in sorted(layouts, key=lambda lay: lay.address.spec):
        if other.address == mine.address:
            continue
        for p in mine.claims():
            for q in other.claims():
                if _overlap(p, q):
                    what = (f"both write bundles_out/{p}" if p == q
                            else f"write bundles_out/{p} and bundles_out/{q}, one inside the other")
                    first, second = sorted((mine.address.spec, other.address.spec))
                    return (f"{first} and {second} {what}. Remedy: give one of them another `output_path` "
                            "(or another target name), or remove one.")
    return None


@dataclass(frozen=True)
class BundleLayouts:
    """The layout of every `monolithic_bundle` of the repository whose fields are valid."""

    layouts: tuple[BundleLayout, ...]


@rule(desc="Find where every monolithic bundle writes")
async def all_bundle_layouts(all_targets: AllTargets) -> BundleLayouts:
    layouts = []
    for tgt in all_targets:
        if not isinstance(tgt, MonolithicBundle):
            continue
        try:
            layouts.append(bundle_layout(tgt.address, tgt[SymbolField].value, tgt[OutputPathField].value,
                                         bool(tgt[KernelBenchField].value)))
        except BundleTargetError:
            continue  # refused when that target is packaged
    return BundleLayouts(tuple(layouts))


def check_no_collision(everything: BundleLayouts, address: Address, symbol: str, output_path: str | None,
                       kernelbench: bool = False) -> BundleLayout:
    """This target's layout, or BundleTargetError when its `output_path` is bad or its outputs collide with
    another bundle target's."""
    mine = bundle_layout(address, symbol, output_path, kernelbench)
    problem = collision(list(everything.layouts), mine)
    if problem:
        raise BundleTargetError(problem)
    return mine


def rules():
    return collect_rules()
