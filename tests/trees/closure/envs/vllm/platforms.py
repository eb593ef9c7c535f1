class Platform:
    pass


current_platform = Platform()
