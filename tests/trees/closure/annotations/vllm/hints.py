import typing
from dataclasses import dataclass

from vllm.types import FieldType


@dataclass
class HintsTarget:
    field: FieldType | None = None

    def hints(self):
        return typing.get_type_hints(type(self))
