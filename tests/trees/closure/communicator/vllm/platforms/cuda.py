class CudaPlatformBase:
    @classmethod
    def get_device_communicator_cls(cls) -> str:
        return (
            "vllm.distributed.device_communicators.cuda_communicator.CudaCommunicator"  # noqa
        )


class NonNvmlCudaPlatform(CudaPlatformBase):
    pass
