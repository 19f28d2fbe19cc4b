"""Classic CNNs: sizes against the papers' arithmetic and against torchvision's own models."""

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from companion.models import classic
from param_formulas import conv_params, n_params


# --------------------------------------------------------------------------------------------
# LeNet-5
# --------------------------------------------------------------------------------------------
def test_lenet5_parameter_count_follows_the_layer_arithmetic():
    expected = (conv_params(1, 6, 5) + conv_params(6, 16, 5)
                + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10))
    assert n_params(classic.lenet5()) == expected


def test_lenet5_shapes():
    model = classic.lenet5(num_classes=7, in_channels=3)
    x = torch.rand(3, 3, 28, 28)
    assert model.features(x).shape == (3, 16, 5, 5)
    assert model(x).shape == (3, 7)


def test_lenet5_relu_variant_and_gradients_reach_the_first_layer():
    model = classic.lenet5(activation=nn.ReLU)
    assert any(isinstance(m, nn.ReLU) for m in model.modules())
    model(torch.rand(2, 1, 28, 28)).sum().backward()
    assert model.features[0].weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------
# Against torchvision
# --------------------------------------------------------------------------------------------
TORCHVISION = {
    "alexnet": (classic.alexnet, lambda: tvm.alexnet(weights=None)),
    "vgg11": (classic.vgg11, lambda: tvm.vgg11(weights=None)),
    "googlenet": (classic.googlenet, lambda: tvm.googlenet(weights=None, aux_logits=False, init_weights=False)),
}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_same_parameters_and_outputs_as_torchvision(name):
    ours_builder, tv_builder = TORCHVISION[name]
    torch.manual_seed(0)
    ours, theirs = ours_builder(num_classes=10), tv_builder()
    if name == "googlenet":
        theirs.fc = nn.Linear(1024, 10)
    else:
        theirs.classifier[-1] = nn.Linear(4096, 10)
    ours_sd, tv_sd = ours.state_dict(), theirs.state_dict()
    assert [(k, v.shape) for k, v in ours_sd.items()] == [(k, v.shape) for k, v in tv_sd.items()]
    assert n_params(ours) == n_params(theirs)
    ours.load_state_dict(tv_sd, strict=True)
    ours.eval(), theirs.eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


def test_published_parameter_counts_with_1000_classes():
    # torchvision's documented sizes: alexnet 61.1M, vgg11 132.9M, googlenet 6.6M
    assert n_params(classic.alexnet()) == n_params(tvm.alexnet(weights=None)) == 61_100_840
    assert n_params(classic.googlenet()) == 6_624_904


def test_vgg11_uses_only_3x3_convolutions_and_five_pools():
    features = classic.make_vgg_layers(classic.VGG_CONFIGS["A"])  # what vgg11() uses
    convs = [m for m in features if isinstance(m, nn.Conv2d)]
    pools = [m for m in features if isinstance(m, nn.MaxPool2d)]
    assert len(convs) == 8 and len(pools) == 5
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert features(torch.rand(1, 3, 64, 64)).shape == (1, 512, 2, 2)  # five halvings: 64 -> 2


# --------------------------------------------------------------------------------------------
# Inception block
# --------------------------------------------------------------------------------------------
def test_inception_block_concatenates_its_branches_and_keeps_the_size():
    block = classic.Inception(192, 64, 96, 128, 16, 32, 32)  # GoogLeNet's inception (3a)
    out = block(torch.rand(2, 192, 28, 28))
    assert out.shape == (2, 64 + 128 + 32 + 32, 28, 28) == (2, block.out_channels, 28, 28)


def test_inception_wide_kernel_changes_only_the_wide_branch():
    narrow = classic.Inception(192, 64, 96, 128, 16, 32, 32, wide_kernel=3)
    wide = classic.Inception(192, 64, 96, 128, 16, 32, 32, wide_kernel=5)
    assert n_params(wide) - n_params(narrow) == 32 * 16 * (25 - 9)
    assert wide(torch.rand(1, 192, 9, 9)).shape == (1, 256, 9, 9)


def test_googlenet_output_shape_and_paper_kernel_variant():
    model = classic.googlenet(num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 96, 96)).shape == (1, 5)
    paper = classic.googlenet(wide_kernel=5)
    assert n_params(paper) > n_params(classic.googlenet())
