from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from hf_like_pkg import HFConfig, HFFieldType
from vllm.types import FieldType, ParamType

if TYPE_CHECKING:
    from vllm.types import CheckType


def config(cls):
    """A decorator of the tree's own: it may read the field annotations (as vLLM's pydantic @config does)."""
    return cls


@dataclass
class Target:
    field: FieldType | None = None
    hf_field: HFFieldType | None = None
    registry: ClassVar[dict] = {}

    def method(self, p: ParamType, c: "CheckType", config: HFConfig) -> ParamType:
        return p


@config
@dataclass
class ConfTarget:
    field: FieldType | None = None
    hf_field: HFFieldType | None = None
