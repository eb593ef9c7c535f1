class Platform:
    def is_rocm(self):
        return False

    def is_cuda(self):
        return True


current_platform = Platform()
