class xpu_ops:
    @staticmethod
    def write(x):
        return ("xpu", x)
