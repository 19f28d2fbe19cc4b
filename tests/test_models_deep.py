"""companion.models.deep: the plain CNN of chapter 05, its initialisations and layer statistics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from companion import ops
from companion.models.deep import INITS, init_weights, layer_statistics, plain_cnn, weight_variance


def test_shapes_depth_and_error_message():
    model = plain_cnn(depth=5, width=4)
    assert len(model.convs()) == 5
    assert model(torch.rand(3, 1, 14, 14)).shape == (3, 10)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\).*\(3, 2, 14, 14\)"):
        model(torch.rand(3, 2, 14, 14))
    with pytest.raises(ValueError, match="norm must be"):
        plain_cnn(norm="layer")
    with pytest.raises(ValueError, match="init must be"):
        plain_cnn(init="glorot")


def test_batch_norm_variant_drops_the_conv_bias_and_accepts_the_companion_layer():
    model = plain_cnn(depth=3, width=4, norm="batch", batch_norm=ops.BatchNorm2d)
    units = list(model.layers)
    assert all(u[0].bias is None and isinstance(u[1], ops.BatchNorm2d) for u in units)
    assert all(isinstance(u[0].bias, nn.Parameter) for u in plain_cnn(depth=3, width=4).layers)


@pytest.mark.parametrize("scheme", ["normal", "xavier", "kaiming"])
def test_drawn_weights_have_the_promised_variance(scheme):
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 96, 3)
    init_weights(conv, scheme, std=0.05)
    n_in, n_out = 64 * 9, 96 * 9
    expected = {"normal": 0.05**2, "xavier": 2 / (n_in + n_out), "kaiming": 2 / n_in}[scheme]
    assert weight_variance(conv.weight, scheme, std=0.05) == pytest.approx(expected)
    # 55,296 draws: the sample variance is within 3% of the true one
    assert conv.weight.var().item() == pytest.approx(expected, rel=0.03)
    assert torch.all(conv.bias == 0) and abs(conv.weight.mean().item()) < 0.01 * math.sqrt(expected)


def test_default_leaves_pytorch_init_and_reports_its_variance():
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 64, 3)
    before = conv.weight.clone()
    init_weights(conv, "default")
    assert torch.equal(conv.weight, before)
    assert conv.weight.var().item() == pytest.approx(weight_variance(conv.weight, "default"), rel=0.03)


def test_layer_statistics_match_a_manual_forward_and_backward():
    torch.manual_seed(0)
    model = plain_cnn(depth=4, width=6)
    x, y = torch.rand(8, 1, 10, 10), torch.randint(0, 10, (8,))
    stats = layer_statistics(model, x, y)
    # the same quantities by hand: run the layers one by one
    h, outs = x, []
    for unit in model.layers:
        z = unit[0](h)
        z.retain_grad()
        outs.append(z)
        h = unit[1:](z)
    loss = F.cross_entropy(model.head(h), y)
    loss.backward()
    assert stats.loss == pytest.approx(loss.item())
    assert stats.activation_rms == pytest.approx([o.pow(2).mean().sqrt().item() for o in outs], rel=1e-5)
    assert stats.gradient_rms == pytest.approx([o.grad.pow(2).mean().sqrt().item() for o in outs], rel=1e-5)
    assert not model.convs()[0]._forward_hooks  # hooks removed


def test_he_keeps_the_scale_and_small_normal_loses_it():
    """The variance argument in a wide network: He ~ constant, N(0, 0.01^2) shrinks ~ 0.085x/layer."""
    x, y = torch.rand(16, 1, 12, 12), torch.randint(0, 10, (16,))
    rms = {}
    for scheme in ("normal", "kaiming"):
        torch.manual_seed(1)
        rms[scheme] = layer_statistics(plain_cnn(depth=8, width=32, init=scheme), x, y).activation_rms
    he = rms["kaiming"]
    assert 0.2 < he[-1] / he[1] < 5
    # homogeneity: same draw, scaled -> the ratio per layer is the product of the scales
    scale = 0.01 / math.sqrt(2 / (9 * 32))
    for layer in range(1, 8):
        expected = (0.01 / math.sqrt(2 / 9)) * scale**layer
        assert rms["normal"][layer] / he[layer] == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("scheme", INITS)
def test_every_scheme_builds_and_runs(scheme):
    assert torch.isfinite(plain_cnn(depth=3, width=4, init=scheme)(torch.rand(2, 1, 8, 8))).all()
