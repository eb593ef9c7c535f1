"""The runner for humans: import a built bundle and call its invocation_example() explicitly (on a GPU).

    python tools/run_bundle.py bundles_out/RMSNorm.py [--full] [--json out.json]

Imports the bundle once under its own module name (a bundle registers its ops with torch.library, its IR
ops at import and its CUDA ops when first built, so the same bundle must not be imported twice in one process;
other bundles may: each registers in namespaces of its own), then runs the example: the first call builds the
CUDA extension if the bundle has one (cached on disk for later processes).
"""

import argparse
import importlib.util
import json
import sys
import time
import traceback
from pathlib import Path


def run(path: Path, small: bool) -> dict:
    name = path.stem
    result = {"bundle": path.name, "small": small}
    t0 = time.perf_counter()
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:  # noqa: BLE001 - reported, not hidden
        result.update(example="not run: the import failed", error=traceback.format_exc()[-3000:])
        return result
    result["import_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    try:
        out = module.invocation_example(small=small)
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        result["example"] = "ok"
        result["example_returned"] = repr(out)[:500]
    except Exception:  # noqa: BLE001 - reported, not hidden
        result["example"] = "failed"
        result["error"] = traceback.format_exc()[-3000:]
    result["example_s"] = round(time.perf_counter() - t0, 3)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("--full", action="store_true", help="model-sized inputs instead of small=True")
    p.add_argument("--json", type=Path, help="write the result here")
    args = p.parse_args()
    result = run(args.bundle, small=not args.full)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["example"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
