from vllm import _custom_ops as ops
from vllm.quant_utils import kFp8Dynamic64Sym, kFp8Dynamic128Sym, kFp8StaticTensorSym, kNvfp4Dynamic


def _detect_output_quant_key(output, output_scale, output_block_scale, output_dim):
    """The fused output quantization: None without it."""
    if output_scale is None and output_block_scale is None:
        return None
    if output_block_scale is not None:
        return kFp8Dynamic128Sym if output_dim else kFp8Dynamic64Sym
    return kFp8StaticTensorSym


class Attention:
    def forward(self, output, output_scale=None, output_block_scale=None):
        quant_key = _detect_output_quant_key(output, output_scale, output_block_scale, 8)
        if quant_key == kNvfp4Dynamic:
            return ops.scaled_fp4_quant(output)
        elif quant_key in (kFp8Dynamic128Sym, kFp8Dynamic64Sym):
            return ops.per_token_group_fp8_quant(output)
        use_quant_output = quant_key is not None and output is not None
        if use_quant_output:
            return ops.static_fp8_quant(output)
        return output

    def rescale(self, output, output_scale=None):
        output_scale = output_scale or 1   # rebound: its value is not known
        if output_scale is not None:
            return output * output_scale
        return output


class ModelConfig:
    quantization = None


def get_quantization_config(model_config):
    if model_config.quantization is not None:
        return ops.get_quant_config(model_config)
    return None


def target():
    return Attention().forward(2), Attention().rescale(3), get_quantization_config(ModelConfig())
