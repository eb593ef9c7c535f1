from vllm.utils.import_utils import resolve_obj_by_qualname


def target(world_size):
    cls = resolve_obj_by_qualname("vllm.distributed.device_communicators.cuda_communicator.CudaCommunicator")
    return cls(world_size).all_reduce(3)
