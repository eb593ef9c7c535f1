"""`pants package` for `monolithic_bundle`: put a built bundle and its stage artifacts into the dist dir
atomically, and print its one `WROTE` line on stdout.

Pants' package goal would materialise the digest file by file (a reader could see a half-written bundle) and
log the line with its timestamp prefix. This rule is uncacheable (it runs on every `package`, cheaply: the
build it asks for is memoised and cached) and does the write itself: the artifacts directory is built beside
its final place and renamed into it, then the bundle is written to a temporary file and renamed over the old
one; unchanged bytes are not rewritten. It hands Pants an empty package, so Pants writes and logs nothing.
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

from bundler_lib.artifacts import replace_directory, replace_file
from rules.package import BuiltBundle, MonolithicBundleFieldSet


@_uncacheable_rule(desc="Write a monolithic bundle")
async def package_bundle(field_set: MonolithicBundleFieldSet, dist_dir: DistDir, build_root: BuildRoot) -> BuiltPackage:
    built = await Get(BuiltBundle, MonolithicBundleFieldSet, field_set)
    contents = await Get(DigestContents, Digest, built.digest)
    prefix = built.artifacts_dir.rstrip("/") + "/"
    artifacts = {c.path[len(prefix):]: c.content for c in contents if c.path.startswith(prefix)}
    (bundle,) = [c.content for c in contents if c.path == built.bundle_path]
    dist = Path(build_root.path) / dist_dir.relpath
    replace_directory(dist / built.artifacts_dir, artifacts)
    replace_file(dist / built.bundle_path, bundle)
    shown = os.path.join(str(dist_dir.relpath), built.bundle_path)
    print(f"WROTE {shown} size={built.size} sha256={built.sha256}", file=sys.stdout, flush=True)
    return BuiltPackage(EMPTY_DIGEST, ())


def rules():
    return collect_rules()
