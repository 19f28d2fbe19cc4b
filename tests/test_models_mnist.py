"""companion.models.mnist: shapes, parameter counts, clear errors, and that each net can learn."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from companion.data import mnist
from companion.models import MnistBNNet, MnistCNN
from param_formulas import conv_params, n_params


# --------------------------------------------------------------------------------------------
# Shapes and parameter counts, from the architecture described in the docstrings
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 5])
def test_mnist_cnn_returns_logits_per_image(batch):
    model = MnistCNN().eval()
    out = model(torch.rand(batch, 1, 28, 28))
    assert out.shape == (batch, 10)
    # logits, not log-probabilities: rows need not be normalised
    assert not torch.allclose(out.exp().sum(1), torch.ones(batch), atol=1e-3)


def test_mnist_cnn_parameter_count_matches_its_layers():
    expected = conv_params(1, 10, 5) + conv_params(10, 20, 5) + (320 * 50 + 50) + (50 * 10 + 10)
    assert n_params(MnistCNN()) == expected


@pytest.mark.parametrize("width", [4, 16])
def test_bnnet_shape_and_parameter_count(width):
    w = width
    convs = conv_params(1, w, 3, False) + conv_params(w, w, 3, False) + conv_params(w, 2 * w, 3, False) \
        + conv_params(2 * w, 2 * w, 3, False)
    batchnorms = 2 * (w + w + 2 * w + 2 * w)  # a weight and a bias per channel
    classifier = 2 * w * 7 * 7 * 10 + 10
    model = MnistBNNet(width=width)
    assert n_params(model) == convs + batchnorms + classifier
    assert model.eval()(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert model.features(torch.rand(2, 1, 28, 28)).shape == (2, 2 * w, 7, 7)


def test_bnnet_num_classes():
    assert MnistBNNet(num_classes=4, width=4).eval()(torch.rand(2, 1, 28, 28)).shape == (2, 4)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 28, 28), (2, 3, 28, 28), (2, 1, 32, 32)])
def test_bnnet_rejects_wrong_input_shape_with_its_shape(shape):
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\).*" + r"\(" + ", ".join(map(str, shape)) + r"\)"):
        MnistBNNet(width=4)(torch.rand(*shape))


def test_bnnet_rejects_bad_width():
    with pytest.raises(ValueError, match="width"):
        MnistBNNet(width=0)


# --------------------------------------------------------------------------------------------
# Modes and gradients
# --------------------------------------------------------------------------------------------
def test_bnnet_eval_mode_is_deterministic_and_train_mode_uses_dropout():
    torch.manual_seed(0)
    model = MnistBNNet(width=4, dropout=0.5)
    x = torch.rand(8, 1, 28, 28)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize("make", [MnistCNN, lambda: MnistBNNet(width=4)])
def test_every_parameter_gets_a_gradient(make):
    torch.manual_seed(0)
    model = make()
    nn.functional.cross_entropy(model(torch.rand(4, 1, 28, 28)), torch.tensor([0, 1, 2, 3])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# --------------------------------------------------------------------------------------------
# They learn: 50 full-batch Adam steps on 64 real digits
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: MnistCNN(dropout=0.0), lambda: MnistBNNet(width=8, dropout=0.0)])
def test_fits_a_small_batch_of_real_digits(make):
    torch.manual_seed(0)
    torch.set_num_threads(2)
    x, y = mnist("train").tensors()
    x, y = x[:64], y[:64]
    model = make()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    with torch.no_grad():
        start = nn.functional.cross_entropy(model(x), y).item()
    for _ in range(50):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert nn.functional.cross_entropy(logits, y).item() < 0.1 * start
    assert (logits.argmax(1) == y).float().mean().item() >= 0.95
