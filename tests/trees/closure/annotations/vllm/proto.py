from typing import Protocol, runtime_checkable

from vllm.types import FieldType


@runtime_checkable
class ProtoTarget(Protocol):
    field: FieldType   # a runtime-checkable protocol records field names, never evaluates their annotations

    def run(self) -> int: ...
