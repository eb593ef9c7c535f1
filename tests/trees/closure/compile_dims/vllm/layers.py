import torch

from vllm.decorators import support_torch_compile


@support_torch_compile(
    enable_if=lambda config: config,
)
class Layers(torch.nn.Module):
    def forward(self, positions: torch.Tensor, x: torch.Tensor | None, n: int):
        return x


@support_torch_compile
class Bare(torch.nn.Module):
    def forward(self, x: torch.Tensor):
        return x


def target():
    return Layers.dims, Bare.dims
