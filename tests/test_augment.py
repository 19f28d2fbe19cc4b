"""Tests for companion.augment: the batched affine warp against torchvision, image by image."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from companion.augment import RandomAffineBatch, affine_batch, augmented_step
from companion.train import Trainer


def reference(image, angle, translate, scale, mode=InterpolationMode.BILINEAR):
    return TF.affine(image, angle=float(angle), translate=[float(t) for t in translate], scale=float(scale),
                     shear=[0.0, 0.0], interpolation=mode)


@pytest.mark.parametrize("shape", [(5, 1, 28, 28), (4, 3, 20, 32)])
def test_affine_batch_equals_torchvision_per_image(shape):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(*shape, generator=gen, dtype=torch.float64)
    b = shape[0]
    angle = (torch.rand(b, generator=gen, dtype=torch.float64) - 0.5) * 200
    translate = torch.randint(-4, 5, (b, 2), generator=gen).double()
    scale = 0.7 + 0.6 * torch.rand(b, generator=gen, dtype=torch.float64)
    out = affine_batch(x, angle, translate, scale)
    assert out.shape == x.shape
    for i in range(b):
        torch.testing.assert_close(out[i], reference(x[i], angle[i], translate[i], scale[i]), rtol=0, atol=1e-10)


def test_nearest_interpolation_matches_torchvision_on_almost_every_pixel():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(8, 1, 28, 28, generator=gen)
    angle = torch.linspace(-15, 15, 8)
    translate = torch.tensor([[1.0, -2.0]]).repeat(8, 1)
    scale = torch.linspace(0.9, 1.1, 8)
    out = affine_batch(x, angle, translate, scale, interpolation="nearest")
    ref = torch.stack([reference(x[i], angle[i], translate[i], scale[i], InterpolationMode.NEAREST) for i in range(8)])
    # rounding ties (a sampling point exactly between two pixels) may go either way in float32
    assert (out == ref).float().mean() > 0.995
    assert set(out.unique().tolist()) <= set(x.unique().tolist()) | {0.0}  # nearest never blends values


def test_identity_warp_returns_the_input():
    x = torch.rand(3, 2, 9, 11)
    out = affine_batch(x, torch.zeros(3), torch.zeros(3, 2), torch.ones(3))
    torch.testing.assert_close(out, x, rtol=0, atol=1e-6)


def test_whole_pixel_shift_moves_the_image_and_fills_zeros():
    x = torch.rand(1, 1, 6, 6)
    out = affine_batch(x, torch.zeros(1), torch.tensor([[2.0, 1.0]]), torch.ones(1))  # 2 px right, 1 px down
    torch.testing.assert_close(out[0, 0, 1:, 2:], x[0, 0, :-1, :-2], rtol=0, atol=1e-6)
    assert float(out[0, 0, 0].abs().max()) < 1e-6 and float(out[0, 0, :, :2].abs().max()) < 1e-6


def test_random_affine_batch_draws_one_warp_per_image():
    digit = torch.zeros(1, 1, 28, 28)
    digit[..., 8:20, 12:16] = 1.0  # a bar: any warp changes it visibly
    batch = digit.repeat(16, 1, 1, 1)
    out = RandomAffineBatch()(batch, generator=torch.Generator().manual_seed(0))
    distinct = {tuple(img.flatten().round(decimals=4).tolist()) for img in out}
    assert len(distinct) == 16  # v2.RandomAffine on the batch tensor would give 1


def test_random_affine_batch_is_reproducible_and_uses_the_global_rng():
    x = torch.rand(4, 1, 28, 28)
    aug = RandomAffineBatch()
    a = aug(x, generator=torch.Generator().manual_seed(3))
    b = aug(x, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(5)
    c = aug(x)
    torch.manual_seed(5)
    d = aug(x)
    assert torch.equal(a, b) and torch.equal(c, d) and not torch.equal(a, c)


def test_sampled_parameters_stay_in_range_like_randomaffine():
    aug = RandomAffineBatch(degrees=12, translate=0.1, scale=(0.8, 1.2))
    angle, translate, scale = aug.sample(20_000, 28, 28, torch.Generator().manual_seed(0))
    assert float(angle.abs().max()) <= 12 and float(angle.abs().max()) > 11.9
    assert torch.equal(translate, translate.round()) and float(translate.abs().max()) == 3  # round(0.1 * 28) px
    assert 0.8 <= float(scale.min()) < 0.81 and 1.19 < float(scale.max()) <= 1.2
    assert abs(float(angle.mean())) < 0.2  # symmetric
    # the same parameter ranges as torchvision's RandomAffine
    tv = v2.RandomAffine(degrees=12, translate=(0.1, 0.1), scale=(0.8, 1.2))
    params = [tv.make_params([torch.zeros(1, 28, 28)]) for _ in range(2000)]
    assert max(abs(p["angle"]) for p in params) <= 12
    assert max(abs(t) for p in params for t in p["translate"]) == 3


@pytest.mark.parametrize("bad", [torch.rand(1, 28, 28), torch.zeros(2, 1, 28, 28, dtype=torch.uint8), [1, 2]])
def test_bad_batches_are_clear_errors(bad):
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        RandomAffineBatch()(bad)


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="interpolation"):
        RandomAffineBatch(interpolation="bicubic")
    with pytest.raises(ValueError, match="scale"):
        RandomAffineBatch(scale=(1.2, 0.8))
    with pytest.raises(ValueError, match="translate"):
        affine_batch(torch.rand(2, 1, 4, 4), torch.zeros(2), torch.zeros(3, 2), torch.ones(2))


def test_augmented_step_warps_training_batches_only():
    calls = []

    def transform(images):
        calls.append(images.shape[0])
        return images.flip(-1)

    data = TensorDataset(torch.rand(20, 1, 8, 8), torch.randint(0, 3, (20,)))
    train, val = DataLoader(data, batch_size=5), DataLoader(data, batch_size=10)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                      step_fn=augmented_step(transform), progress="off")
    trainer.fit(train, val, epochs=2)
    assert calls == [5] * 8  # 4 training batches per epoch, 2 epochs; the 2 validation batches are untouched
