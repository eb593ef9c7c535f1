import torch


def scaled_fp4_quant(x):
    return torch.ops._C.scaled_fp4_quant(x)


def per_token_group_fp8_quant(x):
    return torch.ops._C.per_token_group_fp8_quant(x)


def static_fp8_quant(x):
    return torch.ops._C.static_scaled_fp8_quant(x)


def get_quant_config(model_config):
    return torch.ops._C.convert_weight_packed(model_config)
