import dataclasses
import enum

import torch.nn as nn


def make_default():
    return 7


class Kind(enum.Enum):
    A = 1
    UNUSED_MEMBER = 2


@dataclasses.dataclass
class Fields:
    used_field: int = 1
    unread_field: int = 2   # a dataclass field: part of the constructor, kept


class Settings:
    # read through an instance: kept
    read_attr: str = "read"
    # never read anywhere: left out with these comment lines
    unread_attr: list[str] = []
    unread_decl: int
    made_at_class_creation = make_default()   # runs code when the class is created: kept
    hasattr_probe = True   # read by hasattr("hasattr_probe"): kept
    BODY_CONST = 3
    body_read = BODY_CONST + 1   # BODY_CONST is read by the class body itself


class ModuleSettings(Settings, nn.Module):
    read_attr = "module"
    other_unread = 0


class Op(nn.Module):
    def forward_native(self, x):
        return x

    def forward_cuda(self, x):
        return x + 1

    def forward_xpu(self, x):
        return self.forward_native(x)

    def forward_hip(self, x):
        return self.forward_cuda(x)

    def extra_api(self, x):
        return Settings().read_attr, ModuleSettings().read_attr, Kind.A, Fields().used_field, x

    def probe(self):
        return hasattr(Settings, "hasattr_probe")
