"""Dropout with half the random numbers: the same inverted dropout, a cheaper mask.

On CPU, torch's dropout draws one 32-bit random number per element (bernoulli_), and on a
2-core Xeon those draws were a sixth of a MiniLM training step (19 dropouts of 250k
elements, ~3 ms each, against ~65 ms of matmuls). FastDropout cuts each 32-bit draw into two
16-bit ones: an element is kept when its 16 bits exceed p x 65536, so the drop probability
is p to within 1/65536, the kept values are scaled by 1 / (1 - p) as usual, and the mask is
drawn from torch's seeded generator (runs stay reproducible). Measured per call on
[32, 20, 384]: bf16 3.07 -> 1.18 ms, fp32 4.30 -> 2.66 ms. On GPUs torch's fused dropout
kernel is already cheap: the swap is made on CPU only.
"""

from __future__ import annotations

import torch
from torch import nn

_SPAN = 1 << 16


class FastDropout(nn.Module):
    """nn.Dropout's behaviour (training: zero with probability p, scale the rest by
    1/(1-p); eval: identity) with a mask from 16 random bits per element."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must lie in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        n = x.numel()
        bits = torch.randint(-(1 << 31), (1 << 31) - 1, ((n + 1) // 2,), dtype=torch.int32,
                             device=x.device)
        # int16 halves lie in [-32768, 32767]: P(half >= t - 32768) = 1 - t / 65536
        keep = bits.view(torch.int16)[:n].view(x.shape) >= round(self.p * _SPAN) - _SPAN // 2
        return x * keep * (1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_fast_dropout(model: nn.Module) -> int:
    """Replace every nn.Dropout in `model` (the backbone's, PEFT's lora_dropout) by a
    FastDropout of the same p; returns how many were replaced."""
    swapped = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Dropout:  # subclasses may do more than drop
                setattr(module, name, FastDropout(child.p))
                swapped += 1
    return swapped
