"""companion.models.resnet against torchvision, the paper's parameter counts, and block shapes."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from companion.models import resnet as R
from param_formulas import n_params


# --------------------------------------------------------------------------------------------
# ImageNet ResNets: same state_dict as torchvision, same function after loading its weights
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_state_dict_matches_torchvision_and_outputs_agree(name):
    torch.manual_seed(0)
    ours = getattr(R, name)(num_classes=1000)
    theirs = getattr(torchvision.models, name)(weights=None)  # random init, no download
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert list(ours_sd) == list(theirs_sd)  # same keys, same order
    assert {k: v.shape for k, v in ours_sd.items()} == {k: v.shape for k, v in theirs_sd.items()}

    # Make the BatchNorm statistics non-trivial so that a swapped buffer would show in the output.
    with torch.no_grad():
        for key, value in theirs_sd.items():
            if key.endswith("running_mean"):
                value.normal_(0, 0.1)
            elif key.endswith("running_var"):
                value.uniform_(0.5, 1.5)
    ours.eval(), theirs.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = theirs(x)
        before = ours(x)  # two independent random initialisations: the comparison below can fail
        ours.load_state_dict(theirs.state_dict(), strict=True)
        got = ours(x)
    assert not torch.allclose(before, expected)
    assert got.shape == (2, 1000)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_train_mode_forward_and_gradients_match_torchvision():
    torch.manual_seed(1)
    theirs = torchvision.models.resnet18(weights=None)
    ours = R.resnet18()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    ours(x).square().sum().backward()
    theirs(x).square().sum().backward()
    for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=lambda m, name=name: f"{name}: {m}")


def test_wrong_key_is_rejected_by_strict_loading():
    theirs = torchvision.models.resnet18(weights=None).state_dict()
    theirs["layer1.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        R.resnet18().load_state_dict(theirs, strict=True)


@pytest.mark.parametrize("name,expected", [("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032)])
def test_imagenet_parameter_counts_match_torchvision(name, expected):
    assert n_params(getattr(R, name)()) == n_params(getattr(torchvision.models, name)(weights=None)) == expected


# --------------------------------------------------------------------------------------------
# CIFAR ResNets: the paper's Table 6 parameter counts
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("builder,millions", [(R.resnet20, 0.27), (R.resnet32, 0.46), (R.resnet44, 0.66),
                                              (R.resnet56, 0.85), (R.resnet110, 1.7)])
def test_cifar_parameter_counts_match_the_paper(builder, millions):
    count = n_params(builder(num_classes=10, in_channels=3))
    assert round(count / 1e6, 2 if millions < 1 else 1) == millions, count


def test_cifar_layer_count_is_6n_plus_2():
    for depth in (8, 20, 32, 56):
        model = R.cifar_resnet(depth)
        weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert len(weighted) == depth  # option A adds no convolution
        plain = R.plain_cifar(depth)
        assert len([m for m in plain.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]) == depth


def test_option_a_is_parameter_free_and_option_b_adds_two_projections():
    a, b, plain = R.resnet20(), R.resnet20(shortcut="B"), R.plain_cifar(20)
    assert n_params(a) == n_params(plain)
    # two 1x1 projections (16->32, 32->64) and their BatchNorms
    assert n_params(b) - n_params(a) == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


def test_cifar_models_accept_mnist_inputs():
    model = R.resnet20(num_classes=10, in_channels=1).eval()
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("depth", [0, 9, 21])
def test_bad_depth_is_rejected_with_a_clear_message(depth):
    with pytest.raises(ValueError, match="6n\\+2"):
        R.cifar_resnet(depth)


def test_bad_shortcut_option_is_rejected():
    with pytest.raises(ValueError, match="shortcut must be 'A'"):
        R.cifar_resnet(20, shortcut="C")


# --------------------------------------------------------------------------------------------
# Blocks: shapes, shortcuts
# --------------------------------------------------------------------------------------------
def test_basic_block_keeps_shape_with_identity_shortcut():
    block = R.BasicBlock(16, 16)
    assert block.downsample is None
    assert block(torch.randn(2, 16, 8, 8)).shape == (2, 16, 8, 8)


def test_basic_block_with_projection_shortcut_halves_and_widens():
    proj = nn.Sequential(R.conv1x1(16, 32, stride=2), nn.BatchNorm2d(32))
    block = R.BasicBlock(16, 32, stride=2, downsample=proj)
    x = torch.randn(2, 16, 8, 8)
    assert proj(x).shape == block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x))))).shape == (2, 32, 4, 4)
    assert block(x).shape == (2, 32, 4, 4)


def test_bottleneck_expands_four_times_and_strides_in_the_3x3():
    proj = nn.Sequential(R.conv1x1(64, 256, stride=2), nn.BatchNorm2d(256))
    block = R.Bottleneck(64, 64, stride=2, downsample=proj)
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)  # torchvision's "v1.5"
    assert block(torch.randn(2, 64, 14, 14)).shape == (2, 256, 7, 7)


def test_pad_shortcut_subsamples_and_zero_pads():
    x = torch.randn(2, 16, 8, 8)
    y = R.PadShortcut(16, 32, stride=2)(x)
    assert y.shape == (2, 32, 4, 4)
    torch.testing.assert_close(y[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 16:]) == 0
    with pytest.raises(ValueError, match="only add channels"):
        R.PadShortcut(32, 16, stride=2)


def test_projection_shortcuts_sit_where_the_shape_changes():
    model = R.resnet50()
    with_projection = [name for name, m in model.named_modules() if isinstance(m, R.Bottleneck) and m.downsample is not None]
    assert with_projection == ["layer1.0", "layer2.0", "layer3.0", "layer4.0"]
    stage_shapes = []
    x = torch.randn(1, 3, 64, 64)
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        x = stage(x)
        stage_shapes.append(tuple(x.shape))
    assert stage_shapes == [(1, 256, 16, 16), (1, 512, 8, 8), (1, 1024, 4, 4), (1, 2048, 2, 2)]


def test_residual_block_is_identity_when_its_branch_is_zero():
    """y = F(x) + x: with the last BatchNorm's scale at 0, F(x) = 0 and y = relu(x) = x for x >= 0."""
    block = R.BasicBlock(8, 8)
    nn.init.zeros_(block.bn2.weight)
    x = torch.rand(2, 8, 5, 5)
    torch.testing.assert_close(block(x), x)
    plain = R.PlainBlock(8, 8)
    nn.init.zeros_(plain.bn2.weight)
    assert torch.count_nonzero(plain(x)) == 0  # the plain block loses the signal instead


def test_zero_init_residual_makes_every_block_start_as_identity():
    model = R.resnet20(zero_init_residual=True)
    assert all(float(m.bn2.weight.detach().abs().sum()) == 0 for m in model.modules() if isinstance(m, R.BasicBlock))
