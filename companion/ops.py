"""Convolution and pooling written from first principles, checked against ``torch.nn.functional``.

Everything here follows the argument conventions of :mod:`torch.nn.functional`: tensors are
(B, C, H, W), weights (C_out, C_in, kH, kW), and "convolution" means cross-correlation (no
kernel flip), as in every deep-learning library.

- :func:`conv2d` gathers every kernel-sized window with a strided *view* of the input (no loops,
  no copies until the one ``reshape`` that feeds a matrix multiply) and multiplies by the weights.
  Its backward pass is written out in :class:`Conv2dFunction`: the weight gradient is a
  correlation of the input windows with the output gradient (one batched matrix multiply), and
  the input gradient -- mathematically a *full* convolution of the (stride-dilated) output
  gradient with the flipped kernel -- is computed as one matrix multiply plus kH*kW strided adds.
- :func:`max_pool2d` / :func:`avg_pool2d` reduce the same window view.
- :func:`conv_output_size` and :func:`receptive_field` are the bookkeeping formulas.

Bad arguments raise a :class:`ValueError` that names the shapes involved.
"""

from __future__ import annotations

from typing import Iterable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

IntPair = Union[int, Sequence[int]]

__all__ = [
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "conv_output_size",
    "receptive_field",
    "layer_specs",
    "Conv2dFunction",
]


# ----------------------------------------------------------------------------------------------
# argument checking
# ----------------------------------------------------------------------------------------------
def _pair(value: IntPair, name: str, *, minimum: int) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(2, 1) -> (2, 1)``; anything below ``minimum`` is a ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int or a pair of ints; got {value!r}")
    if isinstance(value, int):
        pair = (value, value)
    else:
        pair = tuple(value)
        if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
            raise ValueError(f"{name} must be an int or a pair of ints; got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value!r}")
    return pair  # type: ignore[return-value]


def _check_input(x: Tensor, what: str) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{what} expects input of shape (B, C, H, W); got {shape}")


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length of a convolution or pooling along one axis.

    ``floor((size + 2*padding - dilation*(kernel_size - 1) - 1) / stride) + 1``. Raises a
    ValueError when the (dilated) kernel does not fit into the padded input.
    """
    if stride < 1 or dilation < 1 or kernel_size < 1 or padding < 0:
        raise ValueError(
            f"need kernel_size >= 1, stride >= 1, dilation >= 1, padding >= 0; got kernel_size={kernel_size}, "
            f"stride={stride}, padding={padding}, dilation={dilation}"
        )
    span = dilation * (kernel_size - 1) + 1
    if size + 2 * padding < span:
        raise ValueError(
            f"kernel of size {kernel_size} (dilation {dilation}, span {span}) is larger than the padded input "
            f"of size {size} + 2*{padding} = {size + 2 * padding}; pad more or use a smaller kernel"
        )
    return (size + 2 * padding - span) // stride + 1


# ----------------------------------------------------------------------------------------------
# windows: the one idea behind convolution and pooling
# ----------------------------------------------------------------------------------------------
def _windows(x: Tensor, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]) -> Tensor:
    """A strided view (B, C, kH, kW, H_out, W_out) of every window of an already padded ``x``.

    Element ``[b, c, i, j, y, x]`` is ``x[b, c, y*sH + i*dH, x*sW + j*dW]``: no data is copied.
    """
    x = x.contiguous()
    B, C, H, W = x.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    ho = conv_output_size(H, kh, sh, 0, dh)
    wo = conv_output_size(W, kw, sw, 0, dw)
    b_st, c_st, h_st, w_st = x.stride()
    return x.as_strided((B, C, kh, kw, ho, wo), (b_st, c_st, dh * h_st, dw * w_st, sh * h_st, sw * w_st))


def _conv_forward(x: Tensor, weight: Tensor, stride: tuple[int, int], dilation: tuple[int, int],
                  bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Valid cross-correlation of a padded ``x``; returns the output and the im2col matrix.

    The im2col matrix holds one window per *row*, (B*H_out*W_out, C_in*kH*kW), so the whole
    batch is one matrix multiply with the (C_out, C_in*kH*kW) weights; the (B, H_out, W_out,
    C_out) product is then laid out as a contiguous (B, C_out, H_out, W_out) tensor, like
    ``F.conv2d`` returns (a small copy: the output is kH*kW*C_in/C_out times smaller than ``cols``).
    """
    B = x.shape[0]
    c_out, c_in, kh, kw = weight.shape
    win = _windows(x, (kh, kw), stride, dilation)  # (B, C_in, kH, kW, H_out, W_out) view
    ho, wo = win.shape[-2:]
    cols = win.permute(0, 4, 5, 1, 2, 3).reshape(B * ho * wo, c_in * kh * kw)  # the one copy
    w2d = weight.reshape(c_out, -1).t()  # (C_in*kH*kW, C_out)
    out = cols @ w2d if bias is None else torch.addmm(bias, cols, w2d)  # (B*H_out*W_out, C_out)
    return out.view(B, ho, wo, c_out).permute(0, 3, 1, 2).contiguous(), cols


def _pad(x: Tensor, padding: tuple[int, int, int, int], value: float = 0.0) -> Tensor:
    """Pad (left, right, top, bottom) -- the order ``F.pad`` uses for the last two axes."""
    if not any(padding):
        return x
    return F.pad(x, padding, value=value)


class Conv2dFunction(torch.autograd.Function):
    """2-D cross-correlation with a hand-written backward pass.

    With ``y = x ⋆ w`` (valid, stride ``S``, dilation ``D``) and upstream gradient ``g = dL/dy``:

    - ``dL/dw[o, c, i, j] = Σ_b Σ_{y,x} g[b, o, y, x] · x[b, c, y*S + i*D, x*S + j*D]``:
      a correlation of the input with the output gradient -- one matrix multiply with the
      im2col matrix saved by the forward pass.
    - ``dL/dx`` is a *full* convolution of ``g`` -- with ``S - 1`` zeros inserted between its
      elements -- with the kernel flipped in both spatial axes and its in/out channels swapped.
      It is computed in the equivalent scatter ("col2im") form: ``wᵀ g`` gives every window's
      gradient, added back at the kH*kW offsets the window was read from -- no multiplications
      by the inserted zeros.
    - ``dL/db[o] = Σ_{b,y,x} g[b, o, y, x]``.

    ``x`` arrives already padded; the wrapper :func:`conv2d` pads and lets autograd un-pad.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, int],
                dilation: tuple[int, int]) -> Tensor:
        out, cols = _conv_forward(x, weight, stride, dilation, bias)
        ctx.save_for_backward(weight, cols if weight.requires_grad else None)
        ctx.input_shape = x.shape
        ctx.stride, ctx.dilation = stride, dilation
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        weight, cols = ctx.saved_tensors
        (sh, sw), (dh, dw) = ctx.stride, ctx.dilation
        c_out, c_in, kh, kw = weight.shape
        B, _, H, W = ctx.input_shape
        ho, wo = grad_out.shape[-2:]
        grad_x = grad_w = grad_b = None

        g = grad_out.permute(0, 2, 3, 1).reshape(-1, c_out)  # (B*H_out*W_out, C_out)
        if ctx.needs_input_grad[1]:
            # dL/dw = gᵀ @ cols: the sum over the batch and all positions is inside one matmul.
            grad_w = (g.t() @ cols).view_as(weight)
        if ctx.needs_input_grad[2]:  # False when bias is None
            grad_b = g.sum(0)
        if ctx.needs_input_grad[0]:
            # dL/dx: each window's gradient is g @ w (one matmul); add every kernel offset's slice
            # back where the window read it ("col2im"). Summed, this is exactly the full
            # convolution of the stride-dilated g with the flipped kernel, without the zeros.
            grad_cols = (g @ weight.reshape(c_out, -1)).view(B, ho, wo, c_in, kh, kw)
            grad_x = grad_out.new_zeros(B, H, W, c_in)  # channels last, like grad_cols
            for i in range(kh):
                for j in range(kw):
                    grad_x[:, i * dh: i * dh + (ho - 1) * sh + 1: sh,
                           j * dw: j * dw + (wo - 1) * sw + 1: sw] += grad_cols[..., i, j]
            grad_x = grad_x.permute(0, 3, 1, 2)
        return grad_x, grad_w, grad_b, None, None


# ----------------------------------------------------------------------------------------------
# public functions
# ----------------------------------------------------------------------------------------------
def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntPair = 1,
           padding: IntPair | str = 0, dilation: IntPair = 1) -> Tensor:
    """2-D convolution (cross-correlation) with the conventions of :func:`torch.nn.functional.conv2d`.

    ``x`` (B, C_in, H, W), ``weight`` (C_out, C_in, kH, kW), ``bias`` (C_out,) or None.
    ``padding`` is an int, a pair, ``"valid"`` (= 0) or ``"same"`` (stride 1 only; an odd total
    padding puts the extra row/column at the bottom/right, as PyTorch does). Zero padding.
    """
    _check_input(x, "conv2d")
    if not isinstance(weight, Tensor) or weight.ndim != 4:
        shape = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"conv2d expects weight of shape (C_out, C_in, kH, kW); got {shape}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"channel mismatch: input {tuple(x.shape)} has {x.shape[1]} channels but weight {tuple(weight.shape)} "
            f"expects {weight.shape[1]} (weight is (C_out, C_in, kH, kW))"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias must have shape ({weight.shape[0]},) for weight {tuple(weight.shape)}; got {tuple(bias.shape)}")
    st = _pair(stride, "stride", minimum=1)
    dil = _pair(dilation, "dilation", minimum=1)
    kh, kw = weight.shape[-2:]
    if isinstance(padding, str):
        if padding == "valid":
            pads = (0, 0, 0, 0)
        elif padding == "same":
            if st != (1, 1):
                raise ValueError(f"padding='same' needs stride 1; got stride={stride!r}")
            th, tw = dil[0] * (kh - 1), dil[1] * (kw - 1)
            pads = (tw // 2, tw - tw // 2, th // 2, th - th // 2)
        else:
            raise ValueError(f"padding must be an int, a pair, 'valid' or 'same'; got {padding!r}")
    else:
        ph, pw = _pair(padding, "padding", minimum=0)
        pads = (pw, pw, ph, ph)
    H, W = x.shape[-2:]
    span_h, span_w = dil[0] * (kh - 1) + 1, dil[1] * (kw - 1) + 1
    Hp, Wp = H + pads[2] + pads[3], W + pads[0] + pads[1]
    if Hp < span_h or Wp < span_w:
        raise ValueError(
            f"kernel {tuple(weight.shape[-2:])} (dilation {dil}, span {(span_h, span_w)}) is larger than the padded "
            f"input {(Hp, Wp)} (input {tuple(x.shape)}, padding {padding!r}); pad more or use a smaller kernel"
        )
    return Conv2dFunction.apply(_pad(x, pads), weight, bias, st, dil)


def _pool_args(x: Tensor, kernel_size: IntPair, stride: IntPair | None, padding: IntPair, what: str):
    _check_input(x, what)
    k = _pair(kernel_size, "kernel_size", minimum=1)
    s = k if stride is None else _pair(stride, "stride", minimum=1)
    p = _pair(padding, "padding", minimum=0)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{what}: padding {p} must be at most half the kernel size {k}")
    H, W = x.shape[-2:]
    if H + 2 * p[0] < k[0] or W + 2 * p[1] < k[1]:
        raise ValueError(
            f"{what}: kernel {k} is larger than the padded input {(H + 2 * p[0], W + 2 * p[1])} "
            f"(input {tuple(x.shape)}, padding {p})"
        )
    return k, s, p


def max_pool2d(x: Tensor, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0) -> Tensor:
    """Max pooling like :func:`torch.nn.functional.max_pool2d` (``stride`` defaults to the kernel size).

    Padding counts as ``-inf`` (it never wins). The gradient of each output flows to exactly one
    input -- the first maximum of its window in row-major order -- which is what PyTorch does.
    """
    k, s, p = _pool_args(x, kernel_size, stride, padding, "max_pool2d")
    xp = _pad(x, (p[1], p[1], p[0], p[0]), value=float("-inf"))
    win = _windows(xp, k, s, (1, 1))  # (B, C, kH, kW, H_out, W_out)
    B, C, kh, kw, ho, wo = win.shape
    flat = win.reshape(B, C, kh * kw, ho, wo)
    idx = flat.argmax(dim=2, keepdim=True)  # first maximum of each window
    return flat.gather(2, idx).squeeze(2)


def avg_pool2d(x: Tensor, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
               count_include_pad: bool = True) -> Tensor:
    """Average pooling like :func:`torch.nn.functional.avg_pool2d` (zero padding).

    With ``count_include_pad=True`` (PyTorch's default) padded zeros count in the mean; otherwise
    each window is divided by the number of real input pixels it covers.
    """
    k, s, p = _pool_args(x, kernel_size, stride, padding, "avg_pool2d")
    xp = _pad(x, (p[1], p[1], p[0], p[0]))
    total = _windows(xp, k, s, (1, 1)).sum(dim=(2, 3))  # (B, C, H_out, W_out)
    if count_include_pad or not any(p):
        return total / (k[0] * k[1])
    ones = _pad(x.new_ones(1, 1, *x.shape[-2:]), (p[1], p[1], p[0], p[0]))
    count = _windows(ones, k, s, (1, 1)).sum(dim=(2, 3))
    return total / count


# ----------------------------------------------------------------------------------------------
# receptive field
# ----------------------------------------------------------------------------------------------
def receptive_field(layers: Iterable[Sequence[int]]) -> list[int]:
    """Receptive field (in input pixels, along one axis) after each layer of a stack.

    ``layers`` holds ``(kernel_size, stride)`` or ``(kernel_size, stride, dilation)`` per layer.
    With ``r_0 = 1`` and ``j_0 = 1`` (the spacing, in input pixels, of neighbouring units):
    ``r_l = r_{l-1} + dilation_l * (kernel_l - 1) * j_{l-1}`` and ``j_l = j_{l-1} * stride_l``.
    """
    r, j, out = 1, 1, []
    for spec in layers:
        spec = tuple(spec)
        if len(spec) not in (2, 3):
            raise ValueError(f"each layer must be (kernel_size, stride[, dilation]); got {spec!r}")
        k, s = spec[0], spec[1]
        d = spec[2] if len(spec) == 3 else 1
        if min(k, s, d) < 1:
            raise ValueError(f"kernel_size, stride and dilation must be >= 1; got {spec!r}")
        r += d * (k - 1) * j
        j *= s
        out.append(r)
    return out


def layer_specs(model: nn.Module) -> list[tuple[str, tuple[int, int, int]]]:
    """``(name, (kernel, stride, dilation))`` of every Conv2d / MaxPool2d / AvgPool2d in ``model``,
    in registration order (one axis: the height). Feed the specs to :func:`receptive_field`."""
    specs = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            specs.append((name, (m.kernel_size[0], m.stride[0], m.dilation[0])))
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            k = _pair(m.kernel_size, "kernel_size", minimum=1)[0]
            s = _pair(m.stride, "stride", minimum=1)[0]  # the layer has set stride = kernel_size if None
            d = _pair(getattr(m, "dilation", 1), "dilation", minimum=1)[0]
            specs.append((name, (k, s, d)))
    return specs
