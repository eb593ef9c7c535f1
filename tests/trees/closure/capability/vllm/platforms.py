class Platform:
    def has_device_capability(self, cap):
        return True

    def is_device_capability(self, cap):
        return True

    def is_device_capability_family(self, cap):
        return True


current_platform = Platform()
