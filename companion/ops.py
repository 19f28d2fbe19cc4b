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
- :func:`batch_norm` (backward written out in :class:`BatchNormFunction`) and the
  :class:`BatchNorm2d` module, drop-ins for ``F.batch_norm`` / ``nn.BatchNorm2d`` down to the
  state dict; :func:`layer_norm`, :func:`group_norm` and inverted :func:`dropout` (chapter 05).

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


# ----------------------------------------------------------------------------------------------
# normalisation and dropout (chapter 05)
# ----------------------------------------------------------------------------------------------
__all__ += ["batch_norm", "BatchNormFunction", "BatchNorm2d", "layer_norm", "group_norm", "dropout"]


def _shape_of(t: Tensor | None) -> object:
    return None if t is None else tuple(t.shape)


def _check_batch_norm_args(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
                           weight: Tensor | None, bias: Tensor | None, training: bool,
                           momentum: float | None) -> None:
    """The checks ``F.batch_norm`` makes, as ValueErrors that name the shapes involved."""
    if not isinstance(x, Tensor) or x.ndim < 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"batch_norm expects input of shape (N, C) or (N, C, *); got {shape}. "
                         "Add a batch axis (x.unsqueeze(0)) for a single example.")
    c = x.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(f"batch_norm: {name} of shape {tuple(t.shape)} does not match input "
                             f"{tuple(x.shape)}, which has {c} channels; expected ({c},)")
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm needs both running_mean and running_var, or neither; got "
                         f"{_shape_of(running_mean)} and {_shape_of(running_var)}")
    if not training and running_mean is None:
        raise ValueError("batch_norm in evaluation mode (training=False) needs running_mean and "
                         "running_var; pass training=True to normalise with the batch statistics")
    if training and running_mean is not None and momentum is None:
        raise ValueError("batch_norm: momentum must be a float (F.batch_norm's rule); the "
                         "cumulative average of momentum=None lives in BatchNorm2d")
    values_per_channel = x.numel() // c if c else 0
    if training and values_per_channel == 1:
        raise ValueError("Expected more than 1 value per channel when training, got input size "
                         f"{tuple(x.shape)}: the batch variance of one value is 0 (and its "
                         "unbiased estimate undefined); use a batch of 2 or more, or eval mode")


class BatchNormFunction(torch.autograd.Function):
    """Batch normalization {Ioffe & Szegedy 2015} with a hand-written backward pass.

    Per channel, over the ``m = N * prod(*)`` values of the batch and spatial axes::

        mu = mean(x),  var = mean((x - mu)^2)          (biased: the batch's own variance)
        xhat = (x - mu) * inv_std,  inv_std = 1 / sqrt(var + eps)
        y = gamma * xhat + beta

    Backward, with ``dxhat = dy * gamma`` (the sums run over the same ``m`` values)::

        dx     = (1/m) * inv_std * (m * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))
        dgamma = sum(dy * xhat),   dbeta = sum(dy)

    ``mu`` and ``var`` depend on every ``x`` of the channel, hence the two correction terms. As
    ``sum(dxhat) = gamma * dbeta`` and ``sum(dxhat * xhat) = gamma * dgamma``, the code computes
    the two parameter gradients once and reuses them: ``dx = k * (dy - dbeta/m - xhat*dgamma/m)``
    with ``k = gamma * inv_std``. In evaluation mode the statistics are the running constants
    and the backward is just ``dx = dy * gamma * inv_std``.

    In training mode the running statistics are updated in place, as ``F.batch_norm`` does:
    ``running = (1 - momentum) * running + momentum * batch`` with the *unbiased* batch variance
    ``var * m / (m - 1)``.

    Speed: the variance is computed in two passes (the mean, then the mean squared deviation --
    as accurate as it gets) from per-channel sums, and the elementwise steps are fused
    multiply-adds, which keeps this within a small factor of PyTorch's fused C++ kernel
    (``benchmarks/bench_batch_norm.py``).
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None,
                running_mean: Tensor | None, running_var: Tensor | None, training: bool,
                momentum: float, eps: float) -> Tensor:
        c = x.shape[1]
        bshape = (1, c) + (1,) * (x.ndim - 2)  # a (C,) vector broadcast over (N, C, *)
        m = x.numel() // c if c else 0
        if training and m == 0:  # an empty batch: nothing to normalise, no statistics to update
            mean, var = x.new_zeros(c), x.new_ones(c)
            xmu = x - mean.view(bshape)
        elif training:
            mean = _channel_sum(x) / m  # (C,)
            xmu = x - mean.view(bshape)  # (N, C, *)
            var = _channel_sum(xmu * xmu) / m  # (C,), biased
            if running_mean is not None:
                with torch.no_grad():
                    batch_mean = mean.to(running_mean.dtype)
                    running_mean.mul_(1 - momentum).add_(batch_mean, alpha=momentum)
                    unbiased = (var * (m / (m - 1))).to(running_var.dtype)
                    running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        else:
            mean, var = running_mean.to(x.dtype), running_var.to(x.dtype)
            xmu = x - mean.view(bshape)
        inv_std = torch.rsqrt(var + eps)  # (C,)
        xhat = xmu.mul_(inv_std.view(bshape))  # (N, C, *), in place: xmu is our own temporary
        if weight is None:
            y = xhat if bias is None else xhat + bias.view(bshape)
        elif bias is None:
            y = xhat * weight.view(bshape)
        else:
            y = torch.addcmul(bias.view(bshape), xhat, weight.view(bshape))  # beta + xhat*gamma
        ctx.save_for_backward(xhat, inv_std, weight)
        ctx.training, ctx.bshape, ctx.m = training, bshape, m
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor):
        xhat, inv_std, weight = ctx.saved_tensors
        bshape, m = ctx.bshape, ctx.m
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        need_sums = need_x and ctx.training
        dbeta = _channel_sum(dy) if (need_b or need_sums) else None  # (C,)
        dgamma = _channel_sum(dy * xhat) if (need_w or need_sums) else None  # (C,)
        dx = None
        if need_x:
            k = inv_std if weight is None else weight * inv_std  # gamma * inv_std, (C,)
            if ctx.training:
                # (1/m) inv_std (m dxhat - sum(dxhat) - xhat sum(dxhat xhat)), with gamma
                # factored out: k*dy - (k/m)*dbeta - xhat*(k/m)*dgamma, as two multiply-adds
                dx = torch.addcmul((-k * dbeta / m).view(bshape), dy, k.view(bshape))
                dx.addcmul_(xhat, (-k * dgamma / m).view(bshape))
            else:
                dx = dy * k.view(bshape)
        return (dx, dgamma if need_w else None, dbeta if need_b else None,
                None, None, None, None, None)


def _channel_sum(t: Tensor) -> Tensor:
    """(N, C, *) -> (C,): the sum over every axis but the channels (spatial axes first, then the
    batch: on CPU two short reductions beat one strided one)."""
    return t.reshape(t.shape[0], t.shape[1], t.shape[2:].numel()).sum(2).sum(0)


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch normalization with the signature and semantics of :func:`F.batch_norm`.

    ``input`` is (N, C) or (N, C, *); ``running_mean``, ``running_var``, ``weight`` and ``bias``
    are (C,) or None. ``training=True`` normalises each channel with its batch mean and biased
    batch variance and, when running statistics are given, updates them in place with
    ``momentum`` (the unbiased variance goes into ``running_var``); ``training=False`` normalises
    with the running statistics. The backward pass is written out in :class:`BatchNormFunction`
    {Ioffe & Szegedy 2015}. Wrong shapes raise a ValueError naming them.
    """
    _check_batch_norm_args(input, running_mean, running_var, weight, bias, training, momentum)
    return BatchNormFunction.apply(input, weight, bias, running_mean, running_var, training,
                                   momentum, eps)


class BatchNorm2d(nn.Module):
    """A drop-in for :class:`torch.nn.BatchNorm2d` built on :func:`batch_norm`.

    Same constructor (including PyTorch's keyword-only ``bias``), same parameters and buffers
    (``weight``, ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``), so state
    dicts load both ways. ``momentum=None``
    makes the running statistics a cumulative average: step ``k`` uses momentum ``1/k``.
    With ``track_running_stats=False`` it normalises with batch statistics in both modes.
    """

    _version = 2  # the state-dict version of nn.BatchNorm2d (with num_batches_tracked)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 *, bias: bool = True):
        super().__init__()
        factory = dict(device=device, dtype=dtype)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features, **factory))  # gamma, (C,)
            if bias:
                self.bias = nn.Parameter(torch.zeros(num_features, **factory))  # beta, (C,)
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer("num_batches_tracked",
                                 torch.tensor(0, dtype=torch.long, device=device))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            if self.bias is not None:
                nn.init.zeros_(self.bias)

    def _momentum_now(self) -> float:
        """This step's momentum; counts the batch. ``momentum=None``: 1/k (a cumulative mean)."""
        if not (self.training and self.track_running_stats):
            return 0.0 if self.momentum is None else self.momentum
        self.num_batches_tracked.add_(1)
        if self.momentum is None:
            return 1.0 / float(self.num_batches_tracked)
        return self.momentum

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, H, W)."""
        if not isinstance(x, Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"BatchNorm2d expects input of shape (N, C, H, W); got {shape}")
        momentum = self._momentum_now()
        use_batch_stats = self.training or self.running_mean is None
        return batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                          use_batch_stats, momentum, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


def _normalize(x: Tensor, dims: list[int], eps: float) -> Tensor:
    """(x - mean) / sqrt(var + eps) over ``dims`` with the biased variance; autograd's backward."""
    if x.numel() == 0:  # an empty batch: nothing to normalise (and no statistics to warn about)
        return x.clone()
    var, mean = torch.var_mean(x, dim=dims, correction=0, keepdim=True)
    return (x - mean) * torch.rsqrt(var + eps)


def layer_norm(x: Tensor, normalized_shape: int | Sequence[int], weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Layer normalization {Ba, Kiros & Hinton 2016}, like :func:`torch.nn.functional.layer_norm`.

    Each example is normalised over its last ``len(normalized_shape)`` axes -- no batch statistics,
    so it behaves the same in training and evaluation and for a batch of one. ``weight`` and
    ``bias`` have shape ``normalized_shape`` (elementwise affine).
    """
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if k == 0 or not isinstance(x, Tensor) or x.ndim < k or tuple(x.shape[-k:]) != shape:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"layer_norm: input {got} must end with normalized_shape {shape}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"layer_norm: {name} has shape {tuple(t.shape)}; expected {shape}")
    y = _normalize(x, list(range(x.ndim - k, x.ndim)), eps)
    if weight is not None:
        y = y * weight
    return y if bias is None else y + bias


def group_norm(x: Tensor, num_groups: int, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Group normalization {Wu & He 2018}, like :func:`torch.nn.functional.group_norm`.

    ``x`` (N, C, *) is split into ``num_groups`` groups of C / num_groups channels; each example's
    group is normalised over its channels and spatial positions, then ``weight`` and ``bias``
    (C,) scale and shift each channel. One group is layer norm over (C, *); C groups is instance
    norm.
    """
    if not isinstance(x, Tensor) or x.ndim < 2:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"group_norm expects input of shape (N, C, *); got {got}")
    n, c = x.shape[:2]
    if num_groups < 1 or c % num_groups:
        raise ValueError(f"group_norm: {c} channels of input {tuple(x.shape)} cannot be split "
                         f"into {num_groups} groups; num_groups must divide C")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(f"group_norm: {name} has shape {tuple(t.shape)}; expected ({c},)")
    if n * (c // num_groups) * x.shape[2:].numel() == 1:  # the condition F.group_norm refuses
        raise ValueError("Expected more than 1 value per channel when training, got input size "
                         f"{tuple(x.shape)} with {num_groups} group(s): its one group holds one "
                         "value, which normalises to 0; use a larger batch or fewer groups")
    grouped = x.reshape(n, num_groups, x.shape[1:].numel() // num_groups)  # (N, G, C/G * prod(*))
    y = _normalize(grouped, [2], eps).reshape(x.shape)  # (N, C, *)
    bshape = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.view(bshape)
    return y if bias is None else y + bias.view(bshape)


def dropout(x: Tensor, p: float = 0.5, training: bool = True,
            generator: torch.Generator | None = None) -> Tensor:
    """Inverted dropout {Srivastava et al. 2014}, like :func:`torch.nn.functional.dropout`.

    In training each element is kept with probability ``1 - p`` and the kept ones are scaled by
    ``1 / (1 - p)``, so the expected output equals the input and evaluation needs no rescaling:
    ``x * mask / (1 - p)`` with ``mask ~ Bernoulli(1 - p)``. The scale ``mask / (1 - p)`` is
    formed first and then multiplied, as PyTorch does, so with the same random stream (the
    default generator seeded like PyTorch's, or ``generator``) the output is identical to
    ``nn.Dropout``'s bit for bit. Evaluation returns ``x`` itself; ``p = 1`` gives zeros.
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p!r}")
    if not training or p == 0:
        return x
    if p == 1:
        return x * torch.zeros_like(x)
    mask = torch.empty_like(x).bernoulli_(1 - p, generator=generator)  # 1 = keep
    return x * mask.div_(1 - p)
