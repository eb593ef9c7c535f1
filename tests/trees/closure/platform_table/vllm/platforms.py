import enum


class PlatformEnum(enum.Enum):
    CUDA = enum.auto()
    CPU = enum.auto()
    OOT = enum.auto()


class CudaPlatform:
    _enum = PlatformEnum.CUDA


current_platform = CudaPlatform()
