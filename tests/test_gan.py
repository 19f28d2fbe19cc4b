"""Tests for companion.models.dcgan and companion.gan: shapes, losses, one step, the metrics."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from companion import gan
from companion.models import DCGANDiscriminator, DCGANGenerator, dcgan
from companion.train import Trainer


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_gan(width: int = 4, z_dim: int = 8) -> tuple[nn.ModuleDict, dict]:
    model = dcgan(z_dim=z_dim, width=width)
    opt = {k: torch.optim.Adam(model[k].parameters(), lr=2e-4, betas=(0.5, 0.999)) for k in ("G", "D")}
    return model, opt


def params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def all_equal(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def none_equal(a, b) -> bool:
    return all(not torch.equal(x, y) for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------------------------
def test_generator_makes_28x28_images_in_tanh_range():
    G = DCGANGenerator(z_dim=100, width=8)
    with torch.no_grad():
        x = G(torch.randn(5, 100) * 10)  # large noise pushes tanh to its limits
    assert x.shape == (5, 1, 28, 28)
    assert float(x.min()) >= -1 and float(x.max()) <= 1


def test_discriminator_returns_one_logit_per_image_and_is_not_squashed():
    D = DCGANDiscriminator(width=8)
    with torch.no_grad():
        D.classify.bias.fill_(5.0)  # a logit, not a probability: may leave [0, 1]
    with torch.no_grad():
        out = D(torch.rand(3, 1, 28, 28) * 2 - 1)
    assert out.shape == (3,)
    assert float(out.max()) > 1


def test_generator_output_fits_discriminator():
    model = dcgan(z_dim=16, width=4)
    assert model["D"](model["G"](torch.randn(2, 16))).shape == (2,)


def test_width_64_has_the_reference_layer_sizes():
    # the reference article: fc to 256x7x7, transposed convs 256->128->64, then (fixed) 64->1;
    # discriminator convs 1->64->128 and a linear layer on 128x7x7 features
    G, D = DCGANGenerator(z_dim=100, width=64), DCGANDiscriminator(width=64)
    assert G.project[0].weight.shape == (256 * 7 * 7, 100)
    assert G.up1[0].weight.shape[:2] == (256, 128) and G.up2[0].weight.shape[:2] == (128, 64)
    assert G.to_image.weight.shape == (1, 64, 3, 3) and G.to_image.stride == (1, 1)
    assert D.down1[0].weight.shape[:2] == (64, 1) and D.down2[0].weight.shape[:2] == (128, 64)
    assert D.classify.weight.shape == (1, 128 * 7 * 7)


def test_builder_sets_the_discriminator_width_separately():
    model = dcgan(z_dim=8, width=4, d_width=6)
    assert model["G"].width == 4 and model["D"].width == 6
    assert dcgan(z_dim=8, width=4)["D"].width == 4


def test_bad_shapes_give_clear_errors():
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        DCGANDiscriminator(width=4)(torch.zeros(2, 1, 56, 56))
    with pytest.raises(ValueError, match=r"\(B, 16\)"):
        DCGANGenerator(z_dim=16, width=4)(torch.zeros(2, 100))


def test_dcgan_init_statistics():
    G = DCGANGenerator(z_dim=100, width=64)
    w = G.up1[0].weight.detach()
    assert abs(float(w.std()) - 0.02) < 0.002
    assert abs(float(w.mean())) < 0.002


# ---------------------------------------------------------------------------------------------
# Losses against hand formulas
# ---------------------------------------------------------------------------------------------
def test_losses_match_log_sigmoid_formulas():
    real, fake = torch.randn(7, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    s_real, s_fake = torch.sigmoid(real), torch.sigmoid(fake)
    expected_d = -(torch.log(s_real) + torch.log(1 - s_fake)).mean()
    torch.testing.assert_close(gan.discriminator_loss(real, fake), expected_d)
    torch.testing.assert_close(gan.generator_loss(fake), -torch.log(s_fake).mean())
    torch.testing.assert_close(gan.saturating_generator_loss(fake), torch.log(1 - s_fake).mean())


def test_losses_stay_finite_where_log_of_sigmoid_does_not():
    real = torch.tensor([-200.0])  # D is sure a real image is fake: sigmoid underflows to 0
    fake = torch.tensor([200.0])  # D is sure a fake image is real: 1 - sigmoid == 0
    assert torch.isinf(-torch.log(torch.sigmoid(real))).all()
    loss = gan.discriminator_loss(real, fake)
    assert math.isclose(float(loss), 400.0, rel_tol=1e-6)
    fake.requires_grad_(True)
    gan.generator_loss(-fake).backward()
    assert torch.isfinite(fake.grad).all()


def test_saturating_loss_gradient_vanishes_and_non_saturating_does_not():
    a = torch.tensor([-10.0], requires_grad=True)  # D confidently rejects the fake
    (g_sat,) = torch.autograd.grad(gan.saturating_generator_loss(a), a)
    (g_ns,) = torch.autograd.grad(gan.generator_loss(a), a)
    assert abs(float(g_sat)) < 1e-4  # = -sigmoid(a)
    assert abs(float(g_ns) + 1) < 1e-4  # = -(1 - sigmoid(a))


# ---------------------------------------------------------------------------------------------
# One training step
# ---------------------------------------------------------------------------------------------
def test_discriminator_step_leaves_generator_untouched():
    model, opt = tiny_gan()
    G, D = model["G"], model["D"]
    g0, d0 = params(G), params(D)
    fake = G(torch.randn(6, G.z_dim))
    gan.discriminator_step(D, opt["D"], torch.rand(6, 1, 28, 28) * 2 - 1, fake)
    assert all_equal(params(G), g0)
    assert all(p.grad is None for p in G.parameters())
    assert not all_equal(params(D), d0)


def test_generator_step_leaves_discriminator_untouched():
    model, opt = tiny_gan()
    G, D = model["G"], model["D"]
    d_params = [p for p in D.parameters()]
    g0, d0 = params(G), params(D)
    gan.generator_step(D, opt["G"], G(torch.randn(6, G.z_dim)))
    assert all_equal(params(D), d0)
    assert all(p.grad is None and p.requires_grad for p in d_params)
    assert not all_equal(params(G), g0)


def test_gan_step_through_trainer_updates_both_nets():
    model, opt = tiny_gan()
    g0, d0 = params(model["G"]), params(model["D"])
    trainer = Trainer(model, opt, step_fn=gan.gan_step, progress="off")
    out = gan.gan_step(trainer, (torch.rand(8, 1, 28, 28), torch.zeros(8)))
    assert set(out) == {"loss_D", "loss_G", "D_real", "D_fake"}
    assert all(torch.isfinite(v) for v in out.values())
    # every weight of both nets moved (Adam's first step moves each parameter by ~lr)
    assert none_equal(params(model["G"]), g0)
    assert none_equal(params(model["D"]), d0)


def test_gan_step_rejects_normalised_images_and_single_optimizer():
    model, opt = tiny_gan()
    trainer = Trainer(model, opt, step_fn=gan.gan_step, progress="off")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        gan.gan_step(trainer, (torch.rand(4, 1, 28, 28) - 0.5, torch.zeros(4)))
    single = Trainer(model, opt["G"], step_fn=gan.gan_step, progress="off")
    with pytest.raises(ValueError, match="optimizer="):
        gan.gan_step(single, (torch.rand(4, 1, 28, 28), torch.zeros(4)))


def test_checkpoint_resume_matches_uninterrupted_run(tmp_path):
    data = torch.utils.data.TensorDataset(torch.rand(24, 1, 28, 28), torch.zeros(24))

    def run(epochs_first: int, resume: bool) -> tuple[nn.ModuleDict, gan.SampleSnapshots]:
        torch.manual_seed(0)
        model, opt = tiny_gan()
        snaps = gan.SampleSnapshots(torch.randn(3, 8))
        loader = torch.utils.data.DataLoader(data, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))
        trainer = Trainer(model, opt, step_fn=gan.gan_step, callbacks=[snaps], progress="off")
        ckpt = tmp_path / f"gan_{resume}.pt"
        trainer.fit(loader, epochs=epochs_first, checkpoint=ckpt)
        if resume:  # a new process: fresh nets and optimizers, state from the file
            torch.manual_seed(123)
            model, opt = tiny_gan()
            trainer = Trainer(model, opt, step_fn=gan.gan_step, callbacks=[snaps], progress="off")
            loader = torch.utils.data.DataLoader(data, batch_size=8, shuffle=True, generator=torch.Generator())
            trainer.fit(loader, epochs=2, checkpoint=ckpt, resume=True)
        return model, snaps

    straight, snaps_a = run(2, resume=False)
    resumed, snaps_b = run(1, resume=True)
    assert all_equal(params(straight), params(resumed))
    assert torch.equal(snaps_a.images[-1], snaps_b.images[-1])


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------
def test_frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_noise():
    feats = torch.randn(500, 12, dtype=torch.float64) @ torch.randn(12, 12, dtype=torch.float64)
    assert gan.frechet_distance(feats, feats) < 1e-8 * float(feats.var(0).sum())
    distances = [gan.frechet_distance(feats, feats + s * torch.randn_like(feats)) for s in (0.1, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(distances, distances[1:])), distances


def test_frechet_distance_matches_closed_form_for_gaussian_moments():
    # For commuting (diagonal) covariances the distance is sum (mu_a-mu_b)^2 + (sd_a - sd_b)^2.
    a = torch.randn(4000, 3, dtype=torch.float64)
    b = a * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64) + torch.tensor([1.0, 0.0, -2.0], dtype=torch.float64)
    sd_a, sd_b = a.std(0), b.std(0)
    expected = float((a.mean(0) - b.mean(0)).square().sum() + (sd_a - sd_b).square().sum())
    assert math.isclose(gan.frechet_distance(a, b), expected, rel_tol=0.05)


def test_frechet_distance_rejects_mismatched_features():
    with pytest.raises(ValueError, match="feature sets"):
        gan.frechet_distance(torch.zeros(5, 3), torch.zeros(5, 4))


def test_classifier_score_bounds():
    k = 10
    same = torch.full((50, k), 1.0 / k)
    assert math.isclose(gan.classifier_score(same), 1.0, abs_tol=1e-9)
    one_class = torch.nn.functional.one_hot(torch.full((40,), 3), k).double()
    assert math.isclose(gan.classifier_score(one_class), 1.0, abs_tol=1e-6)
    balanced = torch.nn.functional.one_hot(torch.arange(40) % k, k).double()
    assert math.isclose(gan.classifier_score(balanced), k, rel_tol=1e-6)
    random = torch.softmax(3 * torch.randn(200, k), dim=1)
    assert 1.0 < gan.classifier_score(random) < k


def test_histogram_confidence_and_sample_quality_with_a_known_classifier():
    class Lookup(nn.Module):  # "classifies" an image by the mean of its pixels
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(1, 2)
            with torch.no_grad():
                self.head.weight.copy_(torch.tensor([[-20.0], [20.0]]))
                self.head.bias.copy_(torch.tensor([10.0, -10.0]))

        def forward(self, x):
            return self.head(x.mean(dim=(1, 2, 3)).unsqueeze(1))

    clf = Lookup()
    images = torch.cat([torch.zeros(3, 1, 4, 4), torch.ones(1, 1, 4, 4)])  # 3 dark, 1 bright
    probs, feats = gan.classifier_outputs(clf, images, clf.head)
    assert feats.shape == (4, 1)
    torch.testing.assert_close(gan.class_histogram(probs), torch.tensor([0.75, 0.25], dtype=torch.float64))
    assert gan.mean_confidence(probs) > 0.99
    q = gan.sample_quality(clf, images, clf.head, reference_features=feats)
    assert q["classes_covered"] == 2 and q["min_class_fraction"] == 0.25
    assert q["frechet"] < 1e-9
    assert gan.quality_from_outputs(probs, feats, reference_features=feats) == q  # same numbers, no second pass
