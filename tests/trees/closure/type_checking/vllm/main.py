from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vllm.heavy import Heavy, heavy_default

    DEFAULT = heavy_default()
else:
    DEFAULT = None


def target(x: "Heavy" = None):
    return DEFAULT if x is None else x
