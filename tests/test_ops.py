"""companion.ops against torch.nn.functional: values and gradients on many random configurations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from companion import ops

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True)
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-4, atol=1e-4)}


@st.composite
def conv_cases(draw):
    """A random but valid conv2d configuration: shapes, stride, padding, dilation, bias."""
    b = draw(st.integers(1, 3))
    c_in, c_out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    # the input must hold the dilated kernel after padding
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 10))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 10))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    return dict(shape=(b, c_in, h, w), wshape=(c_out, c_in, kh, kw), stride=(sh, sw), padding=(ph, pw),
                dilation=(dh, dw), bias=bias, seed=seed)


def make(case, dtype):
    g = torch.Generator().manual_seed(case["seed"])
    x = torch.randn(*case["shape"], generator=g, dtype=dtype, requires_grad=True)
    w = torch.randn(*case["wshape"], generator=g, dtype=dtype, requires_grad=True)
    b = torch.randn(case["wshape"][0], generator=g, dtype=dtype, requires_grad=True) if case["bias"] else None
    return x, w, b


def grads(out, inputs, seed):
    """Gradients of a random linear function of ``out`` w.r.t. ``inputs`` (not just of the sum)."""
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    inputs = [t for t in inputs if t is not None]
    return torch.autograd.grad(out, inputs, upstream)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@SETTINGS
@given(case=conv_cases())
def test_conv2d_matches_torch_forward_and_backward(dtype, case):
    x, w, b = make(case, dtype)
    kw = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"])
    ours, ref = ops.conv2d(x, w, b, **kw), F.conv2d(x, w, b, **kw)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, **TOL[dtype])
    for g_ours, g_ref in zip(grads(ours, (x, w, b), case["seed"]), grads(ref, (x, w, b), case["seed"])):
        torch.testing.assert_close(g_ours, g_ref, **TOL[dtype])


@settings(max_examples=8, deadline=None, derandomize=True)
@given(case=conv_cases())
def test_conv2d_gradcheck(case):
    x, w, b = make(case, torch.float64)
    kw = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"])
    inputs = (x, w) if b is None else (x, w, b)
    assert torch.autograd.gradcheck(lambda *t: ops.conv2d(*t, **kw), inputs)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("padding", ["same", "valid"])
@settings(max_examples=10, deadline=None, derandomize=True)
@given(case=conv_cases())
def test_conv2d_string_padding(padding, case):
    x, w, b = make(case, torch.float64)
    fits = all(s >= d * (k - 1) + 1 for s, d, k in zip(x.shape[-2:], case["dilation"], w.shape[-2:]))
    assume(padding == "same" or fits)
    ours = ops.conv2d(x, w, b, padding=padding, dilation=case["dilation"])
    ref = F.conv2d(x, w, b, padding=padding, dilation=case["dilation"])
    torch.testing.assert_close(ours, ref, **TOL[torch.float64])
    if padding == "same":
        assert ours.shape[-2:] == x.shape[-2:]


@st.composite
def pool_cases(draw):
    b, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = draw(st.integers(max(1, kh - 2 * ph), 9))
    w = draw(st.integers(max(1, kw - 2 * pw), 9))
    return dict(shape=(b, c, h, w), kernel_size=(kh, kw), stride=stride, padding=(ph, pw), seed=draw(st.integers(0, 2**16)))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind", ["max", "avg", "avg_exclude_pad"])
@SETTINGS
@given(case=pool_cases())
def test_pooling_matches_torch(dtype, kind, case):
    # randn has no ties, so the max of each window (and where its gradient goes) is unique
    x = torch.randn(*case["shape"], generator=torch.Generator().manual_seed(case["seed"]), dtype=dtype,
                    requires_grad=True)
    args = (case["kernel_size"], case["stride"], case["padding"])
    if kind == "max":
        ours, ref = ops.max_pool2d(x, *args), F.max_pool2d(x, *args)
    elif kind == "avg":
        ours, ref = ops.avg_pool2d(x, *args), F.avg_pool2d(x, *args)
    else:
        ours = ops.avg_pool2d(x, *args, count_include_pad=False)
        ref = F.avg_pool2d(x, *args, count_include_pad=False)
    torch.testing.assert_close(ours, ref, **TOL[dtype])
    torch.testing.assert_close(grads(ours, (x,), case["seed"])[0], grads(ref, (x,), case["seed"])[0], **TOL[dtype])


@settings(max_examples=6, deadline=None, derandomize=True)
@given(case=pool_cases())
def test_pooling_gradcheck(case):
    x = torch.randn(*case["shape"], generator=torch.Generator().manual_seed(case["seed"]), dtype=torch.float64,
                    requires_grad=True)
    args = (case["kernel_size"], case["stride"], case["padding"])
    assert torch.autograd.gradcheck(lambda t: ops.max_pool2d(t, *args), (x,))
    assert torch.autograd.gradcheck(lambda t: ops.avg_pool2d(t, *args), (x,))


def test_max_pool_gradient_goes_to_the_first_maximum_on_ties():
    x = torch.tensor([[[[1.0, 3.0], [3.0, 0.0]]]], requires_grad=True)
    ops.max_pool2d(x, 2).sum().backward()
    ref = x.detach().clone().requires_grad_()
    F.max_pool2d(ref, 2).sum().backward()
    assert torch.equal(x.grad, ref.grad)
    assert x.grad.sum() == 1.0


@SETTINGS
@given(size=st.integers(1, 40), k=st.integers(1, 7), s=st.integers(1, 4), p=st.integers(0, 3), d=st.integers(1, 3))
def test_conv_output_size_matches_a_real_layer(size, k, s, p, d):
    if size + 2 * p < d * (k - 1) + 1:
        with pytest.raises(ValueError, match="larger than the padded input"):
            ops.conv_output_size(size, k, s, p, d)
        return
    layer = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)
    expected = layer(torch.zeros(1, 1, size, size)).shape[-1]
    assert ops.conv_output_size(size, k, s, p, d) == expected


def test_receptive_field_by_brute_force_gradient():
    """The receptive field is the extent of input pixels that move the centre output unit."""
    # average pooling: max pooling would send each window's gradient to one pixel only
    model = nn.Sequential(nn.Conv2d(1, 1, 3), nn.AvgPool2d(2), nn.Conv2d(1, 1, 3, dilation=2),
                          nn.AvgPool2d(2), nn.Conv2d(1, 1, 5, stride=2))
    specs = ops.layer_specs(model)
    assert [s for _, s in specs] == [(3, 1, 1), (2, 2, 1), (3, 1, 2), (2, 2, 1), (5, 2, 1)]
    assert ops.layer_specs(nn.Sequential(nn.MaxPool2d(3, stride=2)))[0][1] == (3, 2, 1)
    rf = ops.receptive_field(s for _, s in specs)[-1]
    torch.manual_seed(0)
    for m in model:
        if isinstance(m, nn.Conv2d):
            nn.init.uniform_(m.weight, 0.5, 1.0)  # positive weights: no accidental cancellation
    x = torch.rand(1, 1, 80, 80, requires_grad=True)
    out = model(x)
    out[0, 0, 0, 0].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero()
    assert int(rows.max() - rows.min() + 1) == rf


def test_receptive_field_formula_small_cases():
    assert ops.receptive_field([(3, 1), (3, 1)]) == [3, 5]
    assert ops.receptive_field([(2, 2), (2, 2), (2, 2)]) == [2, 4, 8]
    assert ops.receptive_field([(3, 1, 2)]) == [5]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: ops.conv2d(torch.zeros(1, 3, 8, 8), torch.zeros(4, 2, 3, 3)), r"channel mismatch.*\(1, 3, 8, 8\).*\(4, 2, 3, 3\)"),
        (lambda: ops.conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 5, 5)), r"larger than the padded input \(4, 4\)"),
        (lambda: ops.conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 3, 3), stride=0), r"stride must be >= 1"),
        (lambda: ops.conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 3, 3), stride=-2), r"stride must be >= 1"),
        (lambda: ops.conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 3, 3), padding=-1), r"padding must be >= 0"),
        (lambda: ops.conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 3, 3), dilation=0), r"dilation must be >= 1"),
        (lambda: ops.conv2d(torch.zeros(1, 4, 4), torch.zeros(1, 1, 3, 3)), r"\(B, C, H, W\); got \(1, 4, 4\)"),
        (lambda: ops.conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 3, 3)), r"\(C_out, C_in, kH, kW\); got \(1, 3, 3\)"),
        (lambda: ops.conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(2, 1, 3, 3), torch.zeros(3)), r"bias must have shape \(2,\)"),
        (lambda: ops.conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 3, 3), stride=2, padding="same"), r"'same' needs stride 1"),
        (lambda: ops.conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 3, 3), padding="full"), r"'valid' or 'same'"),
        (lambda: ops.max_pool2d(torch.zeros(1, 1, 3, 3), 4), r"kernel \(4, 4\) is larger than the padded input \(3, 3\)"),
        (lambda: ops.max_pool2d(torch.zeros(1, 1, 8, 8), 2, padding=2), r"at most half the kernel size"),
        (lambda: ops.avg_pool2d(torch.zeros(1, 1, 8, 8), 2, stride=0), r"stride must be >= 1"),
        (lambda: ops.conv_output_size(4, 3, stride=0), r"stride >= 1"),
        (lambda: ops.receptive_field([(3,)]), r"\(kernel_size, stride\[, dilation\]\)"),
    ],
)
def test_bad_arguments_raise_clear_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
