"""Parameter counts from the layer formulas, shared by the model tests (expected values are
computed here, independently of the models they check)."""

from __future__ import annotations

from torch import nn


def n_params(model: nn.Module) -> int:
    """Scalar parameters the model actually has."""
    return sum(p.numel() for p in model.parameters())


def conv_params(c_in: int, c_out: int, k: int = 3, bias: bool = True) -> int:
    """A k x k convolution: c_out filters of c_in * k * k weights, plus one bias each."""
    return c_out * c_in * k * k + (c_out if bias else 0)


def linear_params(n_in: int, n_out: int, bias: bool = True) -> int:
    """A fully connected layer: n_in * n_out weights, plus one bias per output."""
    return n_in * n_out + (n_out if bias else 0)
