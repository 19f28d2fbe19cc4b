"""Tests for the class-conditional DCGAN (companion.models.dcgan) and its training step (companion.gan).

Shapes, the label reaching both nets (the projection term computed by hand), bad labels refused
with an error that names them and the valid range, and one conditional step through the Trainer.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from companion import gan
from companion.models.dcgan import (
    ConditionalDCGANGenerator,
    DCGANGenerator,
    ProjectionDiscriminator,
    conditional_dcgan,
)
from companion.train import Trainer


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_cgan(width: int = 4, z_dim: int = 8) -> tuple[nn.ModuleDict, dict]:
    model = conditional_dcgan(z_dim=z_dim, width=width, embed_dim=5)
    opt = {k: torch.optim.Adam(model[k].parameters(), lr=2e-4, betas=(0.5, 0.999)) for k in ("G", "D")}
    return model, opt


def params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


# ---------------------------------------------------------------------------------------------
# Shapes and the label's effect
# ---------------------------------------------------------------------------------------------
def test_conditional_generator_makes_28x28_images_in_tanh_range():
    G = ConditionalDCGANGenerator(z_dim=100, width=8)
    with torch.no_grad():
        x = G(torch.randn(5, 100) * 10, torch.tensor([0, 1, 2, 3, 9]))
    assert x.shape == (5, 1, 28, 28)
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    assert G.z_dim == 100  # callers draw 100 numbers; the label's embedding is added inside
    assert G.sample_noise(3).shape == (3, 100)


def test_projection_discriminator_returns_one_logit_per_image():
    model = conditional_dcgan(z_dim=16, width=4, d_width=6)
    labels = torch.tensor([4, 7])
    assert model["D"](model["G"](torch.randn(2, 16), labels), labels).shape == (2,)
    assert model["G"].width == 4 and model["D"].width == 6


def test_same_noise_under_another_label_gives_another_image():
    G = ConditionalDCGANGenerator(z_dim=8, width=4, embed_dim=5).eval()
    z = torch.randn(1, 8).repeat(10, 1)  # one noise vector, ten labels
    with torch.no_grad():
        images = G(z, torch.arange(10))
    assert all(not torch.equal(images[0], images[k]) for k in range(1, 10))
    with torch.no_grad():  # and the same (z, label) gives the same image
        pair = G(z[:2], torch.tensor([3, 3]))
        torch.testing.assert_close(pair[0], pair[1])


def test_conditional_generator_is_the_dcgan_generator_fed_z_and_the_embedding():
    G = ConditionalDCGANGenerator(z_dim=8, width=4, embed_dim=5).eval()
    plain = DCGANGenerator(z_dim=13, width=4).eval()
    plain.load_state_dict({k: v for k, v in G.state_dict().items() if not k.startswith("embed")})
    z, y = torch.randn(3, 8), torch.tensor([2, 0, 9])
    with torch.no_grad():
        torch.testing.assert_close(G(z, y), plain(torch.cat([z, G.embed.weight[y]], dim=1)))


def test_projection_logit_is_linear_head_plus_inner_product_with_label_embedding():
    D = ProjectionDiscriminator(width=4).eval()
    with torch.no_grad():
        D.embed.weight.normal_()  # make the projection term large enough to matter
    x, y = torch.rand(3, 1, 28, 28) * 2 - 1, torch.tensor([1, 5, 5])
    with torch.no_grad():
        phi = D.down2(D.down1(x)).flatten(1)
        expected = D.classify(phi).squeeze(1) + (D.embed.weight[y] * phi).sum(1)
        torch.testing.assert_close(D(x, y), expected)
        # the same image judged under another label gets another logit
        assert float((D(x, y) - D(x, (y + 1) % 10)).abs().min()) > 1e-3


# ---------------------------------------------------------------------------------------------
# Bad labels: a clear error naming them and the valid range
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("net", ["G", "D"])
@pytest.mark.parametrize("bad", [[3, 10], [-1, 2], [12, 12]])
def test_out_of_range_labels_are_named_with_the_valid_range(net, bad):
    model, _ = tiny_cgan()
    labels = torch.tensor(bad)
    call = (lambda: model["G"](torch.randn(2, 8), labels)) if net == "G" else (
        lambda: model["D"](torch.zeros(2, 1, 28, 28), labels))
    outside = sorted({v for v in bad if not 0 <= v <= 9})
    with pytest.raises(ValueError, match=r"\[0, 9\]") as info:
        call()
    assert str(outside) in str(info.value)


@pytest.mark.parametrize("labels, message", [
    (torch.tensor([1.0, 2.0]), "integer class labels"),
    (torch.nn.functional.one_hot(torch.tensor([1, 2]), 10), r"shape \(2,\)"),
    (torch.tensor([1, 2, 3]), r"shape \(2,\)"),
    (torch.tensor([True, False]), "integer class labels"),
])
def test_labels_of_wrong_type_or_shape_are_refused(labels, message):
    model, _ = tiny_cgan()
    with pytest.raises(ValueError, match=message):
        model["G"](torch.randn(2, 8), labels)
    with pytest.raises(ValueError, match=message):
        model["D"](torch.zeros(2, 1, 28, 28), labels)


def test_bad_images_and_noise_still_get_shape_errors():
    model, _ = tiny_cgan()
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        model["D"](torch.zeros(2, 1, 56, 56), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        model["G"](torch.zeros(2, 13), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="num_classes"):
        ConditionalDCGANGenerator(num_classes=1)


# ---------------------------------------------------------------------------------------------
# Training step, sampling
# ---------------------------------------------------------------------------------------------
def test_conditional_step_updates_both_nets_and_generates_for_the_batch_labels():
    model, opt = tiny_cgan()
    asked: list[torch.Tensor] = []
    model["G"].register_forward_pre_hook(lambda m, args: asked.append(args[1].clone()))
    judged: list[torch.Tensor] = []
    model["D"].register_forward_pre_hook(lambda m, args: judged.append(args[1].clone()))
    g0, d0 = params(model["G"]), params(model["D"])
    trainer = Trainer(model, opt, step_fn=gan.conditional_gan_step, progress="off")
    labels = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])
    out = gan.conditional_gan_step(trainer, (torch.rand(8, 1, 28, 28), labels))
    assert set(out) == {"loss_D", "loss_G", "D_real", "D_fake"}
    assert all(torch.isfinite(v) for v in out.values())
    assert len(asked) == 1 and torch.equal(asked[0], labels)  # one batch of fakes, for these digits
    assert len(judged) == 3 and all(torch.equal(j, labels) for j in judged)  # real, fake (D), fake (G)
    assert all(not torch.equal(a, b) for a, b in zip(params(model["G"]), g0))
    assert all(not torch.equal(a, b) for a, b in zip(params(model["D"]), d0))


def test_conditional_step_needs_labels():
    model, opt = tiny_cgan()
    trainer = Trainer(model, opt, step_fn=gan.conditional_gan_step, progress="off")
    with pytest.raises(ValueError, match="images, labels"):
        gan.conditional_gan_step(trainer, torch.rand(4, 1, 28, 28))


def test_generate_with_labels_and_snapshots():
    model, _ = tiny_cgan()
    labels = gan.balanced_labels(20)
    assert torch.equal(torch.bincount(labels), torch.full((10,), 2))
    a = gan.generate(model["G"], 20, seed=1, labels=labels, batch_size=7)  # chunks keep their labels
    b = gan.generate(model["G"], 20, seed=1, labels=labels)
    assert a.shape == (20, 1, 28, 28)
    torch.testing.assert_close(a, b, atol=1e-3, rtol=0)  # batch size changes only rounding
    with pytest.raises(ValueError, match=r"shape \(20,\)"):
        gan.generate(model["G"], 20, labels=labels[:10])
    with pytest.raises(ValueError, match="multiple of num_classes"):
        gan.balanced_labels(15)
    snaps = gan.SampleSnapshots(torch.randn(4, 8), labels=torch.tensor([0, 1, 2, 3]))
    trainer = Trainer(model, {"G": None, "D": None}, step_fn=gan.conditional_gan_step, progress="off")
    snaps(trainer, {})
    assert snaps.images[0].shape == (4, 1, 28, 28)
