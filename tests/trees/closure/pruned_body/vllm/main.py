from vllm.platforms import current_platform


def rocm_only():
    if current_platform.is_rocm():
        raise ValueError("rocm")
    if current_platform.is_rocm():
        raise ValueError("rocm again")


class Config:
    def __init__(self, check=True, quant_config=None, mode="a"):
        self.mode = mode
        if check:
            if current_platform.is_rocm():
                raise ValueError("pipeline parallelism")

            # a comment between the two pruned statements stays
            if quant_config is not None:
                raise ValueError("quantized")
        else:
            if current_platform.is_rocm():
                self.mode = "rocm"
            if quant_config is not None:
                self.mode = "quant"
        if mode == "a":
            self.mode = "A"
        elif mode == "b":
            if current_platform.is_rocm():
                self.mode = "rocm"
            if quant_config is not None:
                self.mode = "quant"
        for _ in range(2):
            if current_platform.is_rocm():
                self.mode = "rocm"
            if quant_config is not None:
                self.mode = "quant"
        try:
            if current_platform.is_rocm():
                self.mode = "rocm"
            if quant_config is not None:
                self.mode = "quant"
        finally:
            if current_platform.is_rocm():
                self.mode = "rocm"
            if quant_config is not None:
                self.mode = "quant"
        rocm_only()
