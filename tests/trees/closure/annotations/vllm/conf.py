from dataclasses import dataclass
from typing import TYPE_CHECKING

from hf_like_pkg import HFConfig, HFFieldType
from vllm.types import FieldType, ParamType

if TYPE_CHECKING:
    from vllm.types import CheckType


@dataclass
class Target:
    field: FieldType | None = None
    hf_field: HFFieldType | None = None

    def method(self, p: ParamType, c: "CheckType", config: HFConfig) -> ParamType:
        return p
