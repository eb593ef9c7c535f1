"""Pants entry point of the plugin (`backend_packages = ["rules"]`)."""

from rules import outputs, package, stages, subsystem, toolchain, vllm_tree, write_out
from rules.target_types import MonolithicBundle, VllmSdist, VllmSourceTree


def target_types():
    return [MonolithicBundle, VllmSdist, VllmSourceTree]


def rules():
    return [
        *subsystem.rules(),
        *toolchain.rules(),
        *vllm_tree.rules(),
        *stages.rules(),
        *outputs.rules(),
        *package.rules(),
        *write_out.rules(),
    ]
