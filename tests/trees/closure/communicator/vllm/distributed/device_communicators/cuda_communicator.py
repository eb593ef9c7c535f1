import ctypes

from .base_device_communicator import DeviceCommunicatorBase


class CudaCommunicator(DeviceCommunicatorBase):
    def __init__(self, world_size):
        super().__init__(world_size)
        self.nccl = ctypes.CDLL("libnccl.so.2")
