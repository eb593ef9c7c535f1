class GroupCoordinator:
    world_size = 1


def get_tensor_model_parallel_world_size():
    return 1


def get_tp_group():
    return GroupCoordinator()
