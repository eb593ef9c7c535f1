# SPDX-License-Identifier: Apache-2.0
available = False
lib = None
try:
    from vllm.compiled_allocator import (
        init_module,
        create,
        fast_path,
    )
    from vllm.wrapper import Library

    lib = Library()
    available = True
except ModuleNotFoundError:
    init_module = None
    create = None


def target():
    return available, lib, init_module


def maybe_create():
    if available:
        return fast_path()
    return None
