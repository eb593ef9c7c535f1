# SPDX-License-Identifier: Apache-2.0
import os
from pathlib import Path


def tool_path():
    # the module's directory bound to a local name, then one fixed file under it (vLLM's envs.py reads its
    # vllm-rs binary so): that file is read, not the whole directory beside it (diagram.jpg)
    pkg_dir = os.path.dirname(os.path.abspath(__file__))
    candidate = os.path.join(pkg_dir, "tool-bin")
    if os.path.isfile(candidate):
        return candidate
    return None


def table(name):
    root = Path(__file__).parent
    return (root / "tables" / name).read_text()


def listing():
    # the bound name escapes into a call A3 cannot follow: every non-Python file beside the module
    here = os.path.dirname(__file__)
    return os.listdir(here)


def rebound():
    # the name is bound twice: which directory each use means is not followed, every file beside the module is
    d = os.path.dirname(__file__)
    d = os.path.join(d, "x")
    return open(os.path.join(d, "y")).read()


def cached():
    # a global: other blocks read it too
    global CACHE_DIR
    CACHE_DIR = os.path.dirname(__file__)
    return os.path.join(CACHE_DIR, "c.txt")
