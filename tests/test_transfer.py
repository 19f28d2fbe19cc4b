"""Transfer-learning helpers: heads, freezing, and loading weights with and without network."""

import torch
import pytest
import torchvision.models as tvm
from torch import nn

from companion import transfer
from companion.models import classic


def small_bn_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


# --------------------------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------------------------
def test_head_name_finds_fc_or_the_last_linear():
    assert transfer.head_name(tvm.resnet18(weights=None)) == "fc"
    assert transfer.head_name(classic.lenet5()) == "classifier.5"
    assert transfer.head_name(small_bn_net()) == "4"
    with pytest.raises(ValueError, match="no nn.Linear"):
        transfer.head_name(nn.Sequential(nn.Conv2d(1, 1, 1)))


def test_replace_head_keeps_in_features_and_sets_the_classes():
    model = classic.lenet5()
    old = model.classifier[5]
    new = transfer.replace_head(model, 5)
    assert model.classifier[5] is new and new is not old
    assert (new.in_features, new.out_features) == (84, 5)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 5)
    with pytest.raises(ValueError, match="not an nn.Linear"):
        transfer.replace_head(model, 3, name="features.0")


# --------------------------------------------------------------------------------------------
# Freezing
# --------------------------------------------------------------------------------------------
def sgd_step(model: nn.Module, params) -> None:
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    for _ in range(2):
        loss = model(torch.rand(4, 3, 8, 8)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_freeze_leaves_frozen_parameters_and_bn_statistics_unchanged():
    torch.manual_seed(0)
    model = small_bn_net()
    transfer.freeze(model, keep="4")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    # give the optimizer *all* parameters: frozen ones get no gradient, so they must not move
    sgd_step(model, model.parameters())
    after = model.state_dict()
    for k in ("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"):
        torch.testing.assert_close(after[k], before[k], rtol=0, atol=0, msg=k)
    assert not torch.equal(after["4.weight"], before["4.weight"])
    assert transfer.count_parameters(model, trainable_only=True) == 4 * 36 * 3 + 3
    assert transfer.count_parameters(model) == sum(p.numel() for p in model.parameters())


def test_requires_grad_alone_does_not_freeze_batch_norm_statistics():
    torch.manual_seed(0)
    model = small_bn_net()
    transfer.freeze(model, keep="4", freeze_bn_stats=False)
    mean = model[1].running_mean.clone()
    sgd_step(model.train(), transfer.trainable_parameters(model))
    assert not torch.equal(model[1].running_mean, mean)


def test_unfreeze_makes_everything_trainable_again():
    model = small_bn_net()
    transfer.freeze(model, keep=("4",))
    assert transfer.count_parameters(model, trainable_only=True) < transfer.count_parameters(model)
    transfer.unfreeze(model)
    assert transfer.count_parameters(model, trainable_only=True) == transfer.count_parameters(model)
    mean = model[1].running_mean.clone()
    sgd_step(model.train(), model.parameters())
    assert not torch.equal(model[1].running_mean, mean)  # BN follows train() again


def test_freezing_twice_then_unfreezing_releases_batch_norm():
    model = small_bn_net()
    transfer.freeze(model, keep=("4",))
    transfer.freeze(model, keep=("4",))  # e.g. a notebook cell run twice
    transfer.unfreeze(model)
    mean = model[1].running_mean.clone()
    sgd_step(model.train(), model.parameters())
    assert not torch.equal(model[1].running_mean, mean)  # no leftover hook keeps BN in eval mode


def test_freeze_rejects_an_unknown_module_name():
    with pytest.raises(ValueError, match="not modules"):
        transfer.freeze(classic.lenet5(), keep="fc")


# --------------------------------------------------------------------------------------------
# Loading weights
# --------------------------------------------------------------------------------------------
def test_pretrained_from_a_local_state_dict(tmp_path):
    torch.manual_seed(0)
    source = tvm.resnet18(weights=None).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    model = transfer.pretrained("resnet18", weights=path).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x), rtol=0, atol=0)
    headed = transfer.pretrained("resnet18", weights=str(path), num_classes=4)
    assert headed.fc.out_features == 4
    torch.testing.assert_close(headed.conv1.weight, source.conv1.weight)


def test_pretrained_into_a_companion_model_with_torchvision_keys(tmp_path):
    path = tmp_path / "googlenet.pt"
    torch.save(tvm.googlenet(weights=None, aux_logits=False, init_weights=False).state_dict(), path)
    model = transfer.pretrained("googlenet", weights=path, model=classic.googlenet(), num_classes=3)
    assert model.fc.out_features == 3


def test_pretrained_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        transfer.pretrained("resnet18", weights=tmp_path / "missing.pth")
    path = tmp_path / "lenet.pt"
    torch.save(classic.lenet5().state_dict(), path)
    with pytest.raises(ValueError, match="do not fit"):
        transfer.pretrained("resnet18", weights=path)
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        transfer.pretrained("resnet18", weights="IMAGENET9K")


def test_offline_download_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache
    real = torch.hub.load_state_dict_from_url

    def unreachable(url, **kwargs):  # a real connection attempt to a closed local port
        return real("http://127.0.0.1:9/" + url.rsplit("/", 1)[-1], **kwargs)

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", unreachable)
    with pytest.raises(transfer.WeightsUnavailableError, match="no network access") as info:
        transfer.pretrained("resnet18", weights="IMAGENET1K_V1")
    assert "resnet18-f37072fd.pth" in str(info.value) and "weights='path/to/" in str(info.value)


def test_imagenet_weights_come_from_the_cache_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tvm.resnet18(weights=None)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(cached.state_dict(), tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    model = transfer.pretrained("resnet18", weights="IMAGENET1K_V1")
    torch.testing.assert_close(model.fc.weight, cached.fc.weight, rtol=0, atol=0)
