"""Shared fixtures: the real vLLM sdists (fetched once through pip's index, verified, cached)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

# torch.utils.cpp_extension imports setuptools, whose distutils shim refuses to load once any earlier
# test's imports pulled in the standard library's distutils (still present on Python 3.11).
if sys.version_info < (3, 12):   # distutils left the standard library in 3.12
    os.environ.setdefault("SETUPTOOLS_USE_DISTUTILS", "stdlib")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bundler_lib.sdist import ensure_tree  # noqa: E402

# The same pins as targets/BUILD.
VLLM_PINS = {
    "0.26.0": "23e9fa19d7e20ce7dcc1c074d41503e2116d23f19e688f5d5ea91b741f958502",
    "0.33.0": "f4c33c2503d52bb411146afa9618a4f48bed68912f617e6803ac8d76e4c74112",
    "0.34.0": "fcad848b246a9d8652b47e6425af92334dc02492f9802720f54e27b823cf0113",
}
CACHE = Path(os.environ.get("VLLM_BUNDLER_CACHE", Path.home() / ".cache" / "vllm-bundler"))


def vllm_tree(version: str) -> Path:
    return ensure_tree(version, VLLM_PINS[version], CACHE / "sdist")


@pytest.fixture(scope="session")
def vllm_0_26_0() -> Path:
    return vllm_tree("0.26.0")


@pytest.fixture(scope="session")
def vllm_0_33_0() -> Path:
    return vllm_tree("0.33.0")


@pytest.fixture(scope="session")
def vllm_0_34_0() -> Path:
    """A version the project was not developed against (released after 0.33.0): a check of the general case."""
    return vllm_tree("0.34.0")


@pytest.fixture(scope="session")
def runtime_python() -> Path:
    """The bundle runtime's interpreter, set up by ./pants (torch CPU, triton, ninja only: what a bundle declares)."""
    out = subprocess.run([str(ROOT / "pants"), "--runtime-python"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())
