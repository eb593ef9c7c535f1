import torch

from vllm.act import SiluAndMul
from vllm.version_utils import HAS_NEW_TORCH


class TinyLayer(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.act = SiluAndMul()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if HAS_NEW_TORCH:
            return self.act(x)
        return x
