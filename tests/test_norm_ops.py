"""companion.ops normalisation and dropout against PyTorch: values, gradients, running statistics.

``batch_norm`` / ``BatchNorm2d`` (hand-written backward) against ``F.batch_norm`` /
``nn.BatchNorm2d``; ``layer_norm`` / ``group_norm`` (autograd backward) against ``F.layer_norm`` /
``F.group_norm``; ``dropout`` against ``nn.Dropout`` with the same random stream. Hypothesis draws
the shapes (N >= 2 in training, C >= 1, 0-2 spatial axes), values of varied scale and offset, and
the options; every example is derandomized, so a failure reproduces on any machine.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from companion import ops

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)
#: float64: the issue's 1e-10. float32: see assert_same -- a batch of values like 50 +- 0.01 loses
#: most of its float32 digits in x - mean, in PyTorch as in ours, so the bar is PyTorch's own error.
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-4, atol=1e-4)}
#: Gradients through a normalisation are scaled by 1/std, so float32 ones get a looser bar.
GRAD_TOL = {torch.float64: TOL[torch.float64], torch.float32: dict(rtol=1e-3, atol=1e-3)}


# ----------------------------------------------------------------------------------------------
# random cases
# ----------------------------------------------------------------------------------------------
@st.composite
def shapes(draw, min_batch: int = 2) -> tuple[int, ...]:
    """(N, C) or (N, C, L) or (N, C, H, W)."""
    n, c = draw(st.integers(min_batch, 6)), draw(st.integers(1, 5))
    spatial = draw(st.lists(st.integers(1, 5), min_size=0, max_size=2))
    return (n, c, *spatial)


def tensor(shape, dtype, seed: int, scale: float = 1.0, shift: float = 0.0,
           grad: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift
    return t.to(dtype).requires_grad_(grad)


def grads(out: torch.Tensor, inputs, seed: int) -> tuple[torch.Tensor, ...]:
    """Gradients of a random linear function of ``out`` (not just of its sum, whose gradient
    through a normalisation is zero)."""
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed + 1),
                           dtype=torch.float64).to(out.dtype)
    return torch.autograd.grad(out, [t for t in inputs if t is not None], upstream)


def results(fn, inputs, seed) -> list[torch.Tensor]:
    """``fn(*inputs)`` -> (output, *extras); returns output, gradients, extras (running stats)."""
    out, *extras = fn(*inputs)
    return [out, *grads(out, inputs, seed), *extras]


def as_float64(inputs) -> list[torch.Tensor | None]:
    return [None if t is None else t.detach().double().requires_grad_() for t in inputs]


def assert_same(ours_fn, ref_fn, inputs, seed, dtype) -> None:
    """Our function and PyTorch's give the same output, the same gradients for every input that
    is not None, and the same extras (each function returns ``(output, *extras)``).

    float64: within 1e-10. float32: within 1e-4 (1e-3 for gradients) plus 4x the largest error
    PyTorch's own float32 result makes against its float64 result on the same numbers: where
    float32 cannot hold the answer, we must be as accurate as PyTorch, not equal to its rounding.
    """
    ours, ref = results(ours_fn, inputs, seed), results(ref_fn, inputs, seed)
    assert [t.shape for t in ours] == [t.shape for t in ref]
    assert ours[0].dtype == ref[0].dtype == dtype
    n_grads = sum(t is not None for t in inputs)
    truth = results(ref_fn, as_float64(inputs), seed) if dtype == torch.float32 else ref
    for i, (a, b, t) in enumerate(zip(ours, ref, truth)):
        tol = dict(GRAD_TOL[dtype] if 1 <= i <= n_grads else TOL[dtype])
        if dtype == torch.float32 and b.numel():
            tol["atol"] += 4 * (b.double() - t).abs().max().item()
        torch.testing.assert_close(a, b, **tol, msg=lambda m: f"result {i}: {m}")


DTYPES = pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])


# ----------------------------------------------------------------------------------------------
# batch_norm against F.batch_norm
# ----------------------------------------------------------------------------------------------
@DTYPES
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@SETTINGS
@given(shape=shapes(), affine=st.booleans(), stats=st.booleans(),
       scale=st.sampled_from([1e-2, 1.0, 30.0]), shift=st.sampled_from([0.0, -3.0, 50.0]),
       momentum=st.sampled_from([0.1, 0.5, 1.0, 0.0]), eps=st.sampled_from([1e-5, 1e-3]),
       seed=st.integers(0, 2**16))
def test_batch_norm_matches_functional(dtype, training, shape, affine, stats, scale, shift,
                                       momentum, eps, seed):
    stats = stats or not training  # evaluation mode needs running statistics
    c = shape[1]
    x = tensor(shape, dtype, seed, scale, shift)
    w = tensor((c,), dtype, seed + 2) if affine else None
    b = tensor((c,), dtype, seed + 3) if affine else None
    stats0 = None
    if stats:
        stats0 = (tensor((c,), dtype, seed + 4, grad=False),
                  tensor((c,), dtype, seed + 5, grad=False).abs() + 0.1)

    def run(batch_norm):
        """(output, running_mean, running_var): fresh running statistics for every call."""
        def fn(x, w, b):
            mean, var = (None, None) if not stats else (s.to(x.dtype).clone() for s in stats0)
            out = batch_norm(x, mean, var, w, b, training, momentum, eps)
            return (out,) if not stats else (out, mean, var)  # updated in place in training
        return fn

    assert_same(run(ops.batch_norm), run(F.batch_norm), (x, w, b), seed, dtype)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@settings(max_examples=10, deadline=None, derandomize=True)
@given(shape=shapes(), seed=st.integers(0, 2**16))
def test_batch_norm_gradcheck(training, shape, seed):
    """The hand-written backward against finite differences (float64), input, weight and bias."""
    c = shape[1]
    x, w, b = (tensor(s, torch.float64, seed + i) for i, s in enumerate((shape, (c,), (c,))))
    mean, var = torch.zeros(c, dtype=torch.float64), torch.full((c,), 0.5, dtype=torch.float64)
    # momentum 0: the running statistics stay put while gradcheck calls the function many times
    fn = lambda *t: ops.BatchNormFunction.apply(*t, mean, var, training, 0.0, 1e-5)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradcheck(lambda t: ops.batch_norm(t, mean, var, training=training,
                                                             momentum=0.0), (x,))


def test_batch_norm_keeps_the_running_statistics_of_torch_over_steps():
    """Five training steps on differently distributed batches: the same running mean and
    (unbiased) running variance as F.batch_norm, then the same evaluation output."""
    g = torch.Generator().manual_seed(0)
    ours = [torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)]
    ref = [t.clone() for t in ours]
    for step in range(5):
        x = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64) * (step + 1) + step
        ops.batch_norm(x, *ours, training=True, momentum=0.3)
        F.batch_norm(x, *ref, training=True, momentum=0.3)
    torch.testing.assert_close(ours, ref, **TOL[torch.float64])
    assert not torch.allclose(ours[0], torch.zeros(3, dtype=torch.float64))  # it did move
    x = torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(ops.batch_norm(x, *ours), F.batch_norm(x, *ref),
                               **TOL[torch.float64])


@pytest.mark.parametrize("layout", ["channels_last", "transposed view"])
def test_batch_norm_non_contiguous_input(layout):
    """Channels-last tensors and strided views give the same values and gradients."""
    g = torch.Generator().manual_seed(3)
    base = torch.randn(4, 3, 5, 6, generator=g, dtype=torch.float64) * 2 + 1
    if layout == "channels_last":
        x = base.to(memory_format=torch.channels_last)
    else:
        x = base.transpose(2, 3).contiguous().transpose(2, 3)  # same values, strides swapped
    assert not x.is_contiguous()
    w, b = torch.rand(3, generator=g, dtype=torch.float64) + 0.5, torch.randn(3, generator=g,
                                                                           dtype=torch.float64)
    inputs = [t.requires_grad_() for t in (x, w, b)]
    for training in (True, False):
        assert_same(lambda *t: (ops.batch_norm(t[0], torch.zeros(3, dtype=torch.float64),
                                               torch.ones(3, dtype=torch.float64), *t[1:],
                                               training=training),),
                    lambda *t: (F.batch_norm(t[0], torch.zeros(3, dtype=torch.float64),
                                             torch.ones(3, dtype=torch.float64), *t[1:],
                                             training=training),),
                    inputs, 0, torch.float64)


def test_batch_norm_of_an_empty_batch_is_empty_and_leaves_the_statistics():
    for shape in [(0, 3, 2, 2), (2, 3, 0)]:
        stats, stats_ref = [torch.zeros(3), torch.ones(3)], [torch.zeros(3), torch.ones(3)]
        x, w, b = torch.randn(shape, requires_grad=True), torch.ones(3), torch.zeros(3)
        w.requires_grad_(), b.requires_grad_()
        ours = ops.batch_norm(x, *stats, w, b, training=True)
        ref = F.batch_norm(x, *stats_ref, w, b, training=True)
        assert ours.shape == ref.shape == shape
        torch.testing.assert_close(stats, stats_ref, rtol=0, atol=0)
        for g_ours, g_ref in zip(grads(ours, (x, w, b), 0), grads(ref, (x, w, b), 0)):
            torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=0)  # empty, zeros, zeros


def test_batch_norm_errors_name_the_shapes():
    x = torch.randn(4, 3, 2, 2)
    with pytest.raises(ValueError,
                       match=r"running_mean of shape \(4,\).*\(4, 3, 2, 2\).*3 channels"):
        ops.batch_norm(x, torch.zeros(4), torch.ones(4), training=True)
    with pytest.raises(ValueError, match=r"weight of shape \(2,\).*\(4, 3, 2, 2\)"):
        ops.batch_norm(x, None, None, torch.ones(2), training=True)
    with pytest.raises(ValueError, match=r"Expected more than 1 value per channel.*\(1, 3, 1, 1\)"):
        ops.batch_norm(torch.randn(1, 3, 1, 1), None, None, training=True)
    with pytest.raises(ValueError, match=r"Expected more than 1 value per channel.*\(1, 3\)"):
        ops.batch_norm(torch.randn(1, 3), None, None, training=True)
    with pytest.raises(ValueError, match=r"\(N, C\) or \(N, C, \*\); got \(3,\)"):
        ops.batch_norm(torch.randn(3), None, None, training=True)
    with pytest.raises(ValueError, match="evaluation mode"):
        ops.batch_norm(x, None, None)
    with pytest.raises(ValueError, match="momentum must be a float"):
        ops.batch_norm(x, torch.zeros(3), torch.ones(3), training=True, momentum=None)
    # one example is fine in evaluation mode, and in training when it has several positions
    assert ops.batch_norm(torch.randn(1, 3), torch.zeros(3), torch.ones(3)).shape == (1, 3)
    assert ops.batch_norm(torch.randn(1, 3, 2), None, None, training=True).shape == (1, 3, 2)


# ----------------------------------------------------------------------------------------------
# BatchNorm2d against nn.BatchNorm2d
# ----------------------------------------------------------------------------------------------
def pair(c: int, dtype, **kwargs) -> tuple[ops.BatchNorm2d, nn.BatchNorm2d]:
    """Our module and PyTorch's with the same (non-trivial) affine parameters."""
    ref = nn.BatchNorm2d(c, dtype=dtype, **kwargs)
    ours = ops.BatchNorm2d(c, dtype=dtype, **kwargs)
    with torch.no_grad():
        if ref.weight is not None:
            ref.weight.uniform_(0.5, 2.0)
        if ref.bias is not None:
            ref.bias.normal_()
    ours.load_state_dict(ref.state_dict())
    return ours, ref


@DTYPES
@settings(max_examples=20, deadline=None, derandomize=True)
@given(n=st.integers(2, 5), c=st.integers(1, 4), h=st.integers(1, 5), w=st.integers(1, 5),
       momentum=st.sampled_from([0.1, 0.7, None]), affine=st.booleans(), bias=st.booleans(),
       track=st.booleans(), steps=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_batchnorm2d_matches_module(dtype, n, c, h, w, momentum, affine, bias, track, steps,
                                    seed):
    """Several training steps (values, gradients of input/weight/bias, running statistics and
    num_batches_tracked after each), then evaluation mode, then the whole state dict."""
    torch.manual_seed(seed)
    ours, ref = pair(c, dtype, momentum=momentum, affine=affine, bias=bias,
                     track_running_stats=track)
    for step in range(steps + 1):
        training = step < steps
        ours.train(training), ref.train(training)
        x = tensor((n, c, h, w), dtype, seed + 10 * step, scale=step + 1.0, shift=float(step))
        y_ours, y_ref = ours(x), ref(x)
        torch.testing.assert_close(y_ours, y_ref, **TOL[dtype])
        g_ours = grads(y_ours, (x, ours.weight, ours.bias), seed + step)
        g_ref = grads(y_ref, (x, ref.weight, ref.bias), seed + step)
        assert len(g_ours) == len(g_ref) == 1 + affine + (affine and bias)
        for g_a, g_b in zip(g_ours, g_ref):
            torch.testing.assert_close(g_a, g_b, **GRAD_TOL[dtype])
        state, state_ref = ours.state_dict(), ref.state_dict()
        assert list(state) == list(state_ref)
        for key in state:
            torch.testing.assert_close(state[key], state_ref[key], **TOL[dtype])


def test_batchnorm2d_cumulative_average_with_momentum_none():
    """momentum=None: after k batches the running mean is the plain mean of the k batch means."""
    bn = ops.BatchNorm2d(2, momentum=None, affine=False).double()
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64) + k for k in range(4)]
    for x in batches:
        bn(x)
    means = torch.stack([x.mean(dim=(0, 2, 3)) for x in batches])
    torch.testing.assert_close(bn.running_mean, means.mean(0), rtol=1e-12, atol=1e-12)
    assert int(bn.num_batches_tracked) == 4


def test_batchnorm2d_state_dict_loads_both_ways():
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(3)
    ref(torch.randn(4, 3, 5, 5) * 2 + 1)  # non-default running statistics and counter
    with torch.no_grad():
        ref.weight.uniform_(0.5, 2.0)
        ref.bias.normal_()
    ours = ops.BatchNorm2d(3)
    ours.load_state_dict(ref.state_dict())  # strict: same keys, same shapes
    back = nn.BatchNorm2d(3)
    back.load_state_dict(ours.state_dict())
    for key, value in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
        assert torch.equal(back.state_dict()[key], value), key
    x = torch.randn(2, 3, 5, 5)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-6, atol=1e-6)
    # affine=False, track_running_stats=False: no parameters and no buffers, like PyTorch
    bare = ops.BatchNorm2d(3, affine=False, track_running_stats=False)
    assert list(bare.state_dict()) == [] and list(bare.parameters()) == []
    assert repr(bare) == repr(nn.BatchNorm2d(3, affine=False, track_running_stats=False))
    no_bias = dict(momentum=None, bias=False)
    assert repr(ops.BatchNorm2d(3, **no_bias)) == repr(nn.BatchNorm2d(3, **no_bias))
    assert list(ops.BatchNorm2d(3, **no_bias).state_dict()) == list(
        nn.BatchNorm2d(3, **no_bias).state_dict())


def test_batchnorm2d_rejects_input_without_batch_axis():
    with pytest.raises(ValueError, match=r"BatchNorm2d expects input of shape \(N, C, H, W\); "
                                         r"got \(3, 4, 4\)"):
        ops.BatchNorm2d(3)(torch.randn(3, 4, 4))


# ----------------------------------------------------------------------------------------------
# layer_norm and group_norm against F.layer_norm and F.group_norm
# ----------------------------------------------------------------------------------------------
@DTYPES
@SETTINGS
@given(shape=shapes(min_batch=0), k=st.integers(1, 3), affine=st.booleans(),
       scale=st.sampled_from([1e-2, 1.0, 30.0]), shift=st.sampled_from([0.0, 50.0]),
       seed=st.integers(0, 2**16))
def test_layer_norm_matches_functional(dtype, shape, k, affine, scale, shift, seed):
    normalized = shape[-min(k, len(shape) - 1):]  # the last 1..3 axes (never the batch axis)
    x = tensor(shape, dtype, seed, scale, shift)
    w = tensor(normalized, dtype, seed + 2) if affine else None
    b = tensor(normalized, dtype, seed + 3) if affine else None
    assert_same(lambda *t: (ops.layer_norm(t[0], normalized, *t[1:]),),
                lambda *t: (F.layer_norm(t[0], normalized, *t[1:]),), (x, w, b), seed, dtype)


@DTYPES
@SETTINGS
@given(shape=shapes(min_batch=0), groups=st.integers(1, 5), affine=st.booleans(),
       scale=st.sampled_from([1e-2, 1.0, 30.0]), shift=st.sampled_from([0.0, 50.0]),
       seed=st.integers(0, 2**16))
def test_group_norm_matches_functional(dtype, shape, groups, affine, scale, shift, seed):
    groups = max(d for d in range(1, groups + 1) if shape[1] % d == 0)  # a divisor of C
    c = shape[1]
    x = tensor(shape, dtype, seed, scale, shift)
    w = tensor((c,), dtype, seed + 2) if affine else None
    b = tensor((c,), dtype, seed + 3) if affine else None
    if shape[0] * (c // groups) * math.prod(shape[2:]) == 1:  # F.group_norm refuses, so do we
        for group_norm in (ops.group_norm, F.group_norm):
            with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
                group_norm(x, groups, w, b)
        return
    assert_same(lambda *t: (ops.group_norm(t[0], groups, *t[1:]),),
                lambda *t: (F.group_norm(t[0], groups, *t[1:]),), (x, w, b), seed, dtype)


def test_layer_and_group_norm_errors_name_the_shapes():
    x = torch.randn(2, 6, 4, 4)
    with pytest.raises(ValueError, match=r"input \(2, 6, 4, 4\) must end with normalized_shape "
                                         r"\(5, 4\)"):
        ops.layer_norm(x, (5, 4))
    with pytest.raises(ValueError, match=r"weight has shape \(4,\); expected \(4, 4\)"):
        ops.layer_norm(x, (4, 4), torch.ones(4))
    with pytest.raises(ValueError, match=r"6 channels of input \(2, 6, 4, 4\) cannot be split "
                                         r"into 4 groups"):
        ops.group_norm(x, 4)
    with pytest.raises(ValueError, match=r"bias has shape \(3,\); expected \(6,\)"):
        ops.group_norm(x, 3, None, torch.zeros(3))


# ----------------------------------------------------------------------------------------------
# dropout against nn.Dropout
# ----------------------------------------------------------------------------------------------
@DTYPES
@settings(max_examples=25, deadline=None, derandomize=True)
@given(shape=st.lists(st.integers(0, 40), min_size=1, max_size=3),
       p=st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.9, 0.99, 1.0]), seed=st.integers(0, 2**16))
def test_dropout_equals_nn_dropout_with_the_same_seed(dtype, shape, p, seed):
    """nn.Dropout draws its mask with bernoulli_(1 - p) from the default generator; so does
    ours, so the outputs (and gradients) are identical, not just alike."""
    x = tensor(shape, dtype, seed)
    torch.manual_seed(seed)
    ref = nn.Dropout(p)(x)
    torch.manual_seed(seed)
    ours = ops.dropout(x, p)
    assert torch.equal(ours, ref)
    assert torch.equal(*(grads(y, (x,), seed)[0] for y in (ours, ref)))
    # an explicit generator with the same seed draws the same stream
    torch.manual_seed(seed + 1)  # the default generator is not used
    ours_g = ops.dropout(x, p, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(ours_g, ref)


def test_dropout_scales_the_kept_elements_and_keeps_one_minus_p():
    """Inverted scaling on the mask itself: dropped elements are 0, kept ones are x / (1 - p);
    the kept share of 200,000 elements is within 5 standard deviations of 1 - p."""
    x = torch.rand(200_000, dtype=torch.float64) + 0.5  # no zeros, so the mask is visible
    for p in (0.2, 0.5, 0.8):
        y = ops.dropout(x, p, generator=torch.Generator().manual_seed(0))
        kept = y != 0
        torch.testing.assert_close(y[kept], x[kept] / (1 - p), rtol=1e-15, atol=0)
        sd = ((1 - p) * p / x.numel()) ** 0.5
        assert abs(kept.double().mean().item() - (1 - p)) < 5 * sd, p


def test_dropout_eval_identity_and_bad_p():
    x = torch.randn(5, 4)
    assert ops.dropout(x, 0.5, training=False) is x
    assert ops.dropout(x, 0.0) is x
    assert torch.equal(ops.dropout(x, 1.0), torch.zeros_like(x))
    for p in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
            ops.dropout(x, p)
