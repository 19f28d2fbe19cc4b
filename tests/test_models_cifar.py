"""companion.models.cifar: shapes, parameter counts from the layer formulas, errors, and learning."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from companion.models import CifarConvNet, ThreeConvNet, cifar_convnet, three_conv_net
from param_formulas import conv_params, linear_params, n_params


def test_parameter_counts_match_the_layer_formulas() -> None:
    two = conv_params(3, 32) + conv_params(32, 64) + linear_params(64 * 8 * 8, 128) + linear_params(128, 10)
    three = (conv_params(3, 32) + conv_params(32, 64) + conv_params(64, 128)
             + linear_params(128 * 4 * 4, 512) + linear_params(512, 10))
    assert n_params(cifar_convnet()) == two
    assert n_params(three_conv_net()) == three


@pytest.mark.parametrize("build", [cifar_convnet, three_conv_net])
@pytest.mark.parametrize("batch", [1, 3, 64])
def test_one_row_of_logits_per_image(build, batch: int) -> None:
    """The reference's view(-1, 128*8*8) folded 4 images into one row; flatten(1) must not."""
    torch.manual_seed(0)
    out = build()(torch.rand(batch, 3, 32, 32))
    assert out.shape == (batch, 10)


@pytest.mark.parametrize("build", [cifar_convnet, three_conv_net])
def test_images_are_independent(build) -> None:
    """Each image's logits depend on that image only (no mixing across the batch)."""
    torch.manual_seed(0)
    model = build().eval()
    x = torch.rand(4, 3, 32, 32)
    together = model(x)
    alone = torch.cat([model(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_three_conv_feature_map_is_4x4() -> None:
    model = three_conv_net()
    assert model.features(torch.zeros(2, 3, 32, 32)).shape == (2, 128, 4, 4)
    assert model.fc1.in_features == 128 * 4 * 4


def test_other_sizes_and_channels() -> None:
    model = ThreeConvNet(num_classes=5, in_channels=1, image_size=64)
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 5)
    assert CifarConvNet(num_classes=2)(torch.zeros(1, 3, 32, 32)).shape == (1, 2)


@pytest.mark.parametrize(
    "shape", [(3, 32, 32), (2, 1, 32, 32), (2, 3, 28, 28), (2, 32, 32, 3)],
)
def test_wrong_input_shape_is_a_clear_error(shape) -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        three_conv_net()(torch.zeros(shape))


@pytest.mark.parametrize("build", [cifar_convnet, three_conv_net])
def test_learns_a_tiny_batch(build) -> None:
    """A few Adam steps on 8 random color images drive the training loss down: gradients flow."""
    torch.manual_seed(0)
    model = build()
    x, y = torch.rand(8, 3, 32, 32), torch.arange(8)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    first = loss_fn(model(x), y).item()
    for _ in range(25):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    assert all(p.grad is not None for p in model.parameters())


def test_too_many_stages_for_the_image_size_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match="at least 8 pixels; got 4"):
        ThreeConvNet(image_size=4)
