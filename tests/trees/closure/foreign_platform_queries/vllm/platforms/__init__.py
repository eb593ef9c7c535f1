class Platform:
    def is_cuda_alike(self):
        return True

    def is_xpu(self):
        return False

    def get_device_capability(self, device=0):
        raise RuntimeError("queries the GPU")

    def get_device_name(self, device=0):
        raise RuntimeError("queries the GPU")


current_platform = Platform()
