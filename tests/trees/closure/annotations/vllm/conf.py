from dataclasses import dataclass
from typing import TYPE_CHECKING

from vllm.types import FieldType, ParamType

if TYPE_CHECKING:
    from vllm.types import CheckType


@dataclass
class Target:
    field: FieldType | None = None

    def method(self, p: ParamType, c: "CheckType") -> ParamType:
        return p
