class DeviceCommunicatorBase:
    def __init__(self, world_size):
        self.world_size = world_size

    def all_reduce(self, x):
        return x * self.world_size
