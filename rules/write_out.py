"""`pants package` for `monolithic_bundle`: put a built bundle and its stage artifacts into the dist dir
together, and print its one `WROTE` line on stdout.

Pants' package goal would materialise the digest file by file (a reader could see a half-written bundle, or a
new report beside an old bundle) and log the line with its timestamp prefix. This rule is uncacheable (it runs
on every `package`, cheaply: the build it asks for is memoised and cached) and does the write itself
(`bundler_lib.artifacts.publish_bundle`): one directory per build holding the bundle and its artifacts, written
complete beside its place, the bundle checked against the sha256 in A7.report.json, then switched in by one
atomic rename; `bundles_out/<output_path>`, `bundles_out/<dir>/artifacts/<target>/` and, with
`kernelbench=True`, `bundles_out/<bundle stem>.kernelbench.py` are relative symlinks through that switch.
Unchanged output is not rewritten. It hands Pants an empty package, so Pants writes and logs nothing.

Before anything is built, the target's outputs are checked against every bundle target's (rules/outputs.py):
a collision is refused, naming both targets.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pants.base.build_root import BuildRoot
from pants.core.goals.package import BuiltPackage
from pants.core.util_rules.distdir import DistDir
from pants.engine.fs import EMPTY_DIGEST, Digest, DigestContents
from pants.engine.rules import Get, _uncacheable_rule, collect_rules

from bundler_lib.artifacts import PublishError, publish_bundle
from bundler_lib.example.kernelbench import SUFFIX as KERNELBENCH_SUFFIX
from rules.outputs import BundleLayouts, BundleTargetError, check_no_collision
from rules.package import BuiltBundle, MonolithicBundleFieldSet


@_uncacheable_rule(desc="Write a monolithic bundle")
async def package_bundle(field_set: MonolithicBundleFieldSet, dist_dir: DistDir, build_root: BuildRoot) -> BuiltPackage:
    # no stage runs while this target's outputs collide with another bundle target's
    check_no_collision(await Get(BundleLayouts), field_set.address, field_set.symbol.value,
                       field_set.output_path.value, bool(field_set.kernelbench.value))
    built = await Get(BuiltBundle, MonolithicBundleFieldSet, field_set)
    contents = await Get(DigestContents, Digest, built.digest)
    prefix = built.artifacts_dir.rstrip("/") + "/"
    artifacts = {c.path[len(prefix):]: c.content for c in contents if c.path.startswith(prefix)}
    (bundle,) = [c.content for c in contents if c.path == built.bundle_path]
    extra = {c.path: c.content for c in contents if c.path == built.kernelbench_path}
    dist = Path(build_root.path) / dist_dir.relpath
    try:
        legacy = os.path.join(os.path.dirname(built.bundle_path), "artifacts", field_set.address.target_name)
        publish_bundle(dist, built.store_dir, built.bundle_path, built.artifacts_dir, bundle, artifacts, built.sha256,
                       legacy_artifacts_dir=legacy, extra_files=extra)
    except PublishError as e:
        raise BundleTargetError(f"{field_set.address}: cannot write {dist_dir.relpath}/{built.bundle_path}: {e}") from None
    except OSError as e:
        raise BundleTargetError(
            f"{field_set.address}: cannot write {dist_dir.relpath}/{built.bundle_path}: {e}. Remedy: fix the "
            f"permissions or space of {dist_dir.relpath}/; the previous build is as it was") from None
    _drop_retired_kernelbench(dist, built)
    shown = os.path.join(str(dist_dir.relpath), built.bundle_path)
    print(f"WROTE {shown} size={built.size} sha256={built.sha256}", file=sys.stdout, flush=True)
    return BuiltPackage(EMPTY_DIGEST, ())


def _drop_retired_kernelbench(dist: Path, built: BuiltBundle) -> None:
    """Remove this target's KernelBench link once `kernelbench` is off: it would point at nothing."""
    if built.kernelbench_path:
        return
    link = dist / (built.bundle_path[:-len(".py")] + KERNELBENCH_SUFFIX)
    ours = os.path.relpath(dist / built.store_dir / "current" / link.name, link.parent)
    if link.is_symlink() and os.readlink(link) == ours:
        link.unlink()


def rules():
    return collect_rules()
