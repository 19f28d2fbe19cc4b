"""Training and measuring a GAN (Goodfellow et al. 2014) with the book's ``Trainer``.

* Losses on **logits** with ``BCEWithLogitsLoss`` (a log-sum-exp inside, so no ``log(0)``):
  :func:`discriminator_loss`, the non-saturating :func:`generator_loss` used in practice and the
  original minimax :func:`saturating_generator_loss` for comparison.
* :func:`gan_step` -- one discriminator update then one generator update, as a ``Trainer``
  ``step_fn`` with ``model = nn.ModuleDict({"G": ..., "D": ...})`` and
  ``optimizer = {"G": ..., "D": ...}``. Checkpoint / resume then work through the ``Trainer``.
* Sample quality measured with a classifier trained in the book (no downloaded Inception
  weights): class histogram and coverage, mean confidence, a classifier score (the Inception
  Score of Salimans et al. 2016 with an MNIST classifier) and a Frechet distance on the
  classifier's penultimate features (the FID of Heusel et al. 2017, same substitution).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .train import eval_mode


# --------------------------------------------------------------------------------------------
# Losses (all on logits)
# --------------------------------------------------------------------------------------------
def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """``-E[log D(x)] - E[log(1 - D(G(z)))]``: real images labelled 1, generated ones 0."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss ``-E[log D(G(z))]``: generated images labelled "real"."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def saturating_generator_loss(fake_logits: Tensor) -> Tensor:
    """The minimax game's generator loss ``E[log(1 - D(G(z)))]`` (it saturates when D wins)."""
    return -F.softplus(fake_logits).mean()  # log(1 - sigmoid(a)) = -softplus(a)


# --------------------------------------------------------------------------------------------
# One training step
# --------------------------------------------------------------------------------------------
def to_tanh_range(images: Tensor) -> Tensor:
    """Images in [0, 1] (as ``companion.data`` serves them) -> [-1, 1], the generator's range."""
    if images.numel() and (float(images.min()) < 0.0 or float(images.max()) > 1.0):
        raise ValueError(
            f"real images must be in [0, 1] (as companion.data serves them); got values in "
            f"[{float(images.min()):.3f}, {float(images.max()):.3f}]. Drop the dataset's Normalize transform."
        )
    return images * 2 - 1


def to_unit_range(images: Tensor) -> Tensor:
    """Generator output in [-1, 1] -> [0, 1], the range the book's classifiers read."""
    return (images.clamp(-1, 1) + 1) / 2


def _apply(net: nn.Module, x: Tensor, labels: Tensor | None) -> Tensor:
    """``net(x)``, or ``net(x, labels)`` for a class-conditional G or D."""
    return net(x) if labels is None else net(x, labels)


def discriminator_step(D: nn.Module, optimizer: torch.optim.Optimizer, real: Tensor, fake: Tensor,
                       labels: Tensor | None = None) -> dict[str, Tensor]:
    """Update D on real images (label 1) and generated ones (label 0); G receives no gradient.

    ``labels`` (B,): the digit of each real image *and* of the fake at the same position, for a
    conditional D (:class:`~companion.models.dcgan.ProjectionDiscriminator`).
    """
    optimizer.zero_grad(set_to_none=True)
    real_logits = _apply(D, real, labels)  # (B,)
    fake_logits = _apply(D, fake.detach(), labels)  # (B,) detach: this step must not build a path into G
    loss = discriminator_loss(real_logits, fake_logits)
    loss.backward()
    optimizer.step()
    return {"loss_D": loss.detach(), "D_real": torch.sigmoid(real_logits).mean().detach(),
            "D_fake": torch.sigmoid(fake_logits).mean().detach()}


def generator_step(D: nn.Module, optimizer: torch.optim.Optimizer, fake: Tensor,
                   labels: Tensor | None = None) -> dict[str, Tensor]:
    """Update G through a *fresh* pass of the (just updated) D, whose parameters stay frozen.

    ``fake`` must still carry its graph back to G. D's ``requires_grad`` is switched off for the
    backward pass, so this step neither computes nor leaves gradients in D's parameters.
    ``labels`` (B,): the digits the fakes were asked to be, for a conditional D.
    """
    optimizer.zero_grad(set_to_none=True)
    flags = [p.requires_grad for p in D.parameters()]
    D.requires_grad_(False)
    try:
        loss = generator_loss(_apply(D, fake, labels))  # (B,) logits -> scalar
        loss.backward()
    finally:
        for p, flag in zip(D.parameters(), flags):
            p.requires_grad_(flag)
    optimizer.step()
    return {"loss_G": loss.detach()}


def _gan_parts(trainer) -> tuple[nn.Module, nn.Module, dict]:
    """``trainer.model["G"]``, ``["D"]`` and the two optimizers, or a clear error."""
    opt = trainer.optimizer
    if not (isinstance(opt, dict) and set(opt) == {"G", "D"}):
        raise ValueError(f"a GAN step needs optimizer={{'G': ..., 'D': ...}}; got {type(opt).__name__} "
                         f"{sorted(opt) if isinstance(opt, dict) else ''}")
    return trainer.model["G"], trainer.model["D"], opt


def gan_step(trainer, batch) -> dict[str, Tensor]:
    """``Trainer`` step: one D update, then one G update, on a batch of real images in [0, 1].

    Needs ``trainer.model`` with entries ``"G"`` (with a ``z_dim`` attribute) and ``"D"``, and
    ``trainer.optimizer == {"G": ..., "D": ...}``. Noise is drawn from the global torch RNG, whose
    state the ``Trainer`` checkpoints, so a resumed run continues exactly.
    """
    G, D, opt = _gan_parts(trainer)
    images = batch[0] if isinstance(batch, (tuple, list)) else batch
    real = to_tanh_range(trainer.to_device(images))  # (B, 1, 28, 28) in [-1, 1]
    z = torch.randn(real.shape[0], G.z_dim).to(trainer.device)  # (B, z_dim)
    fake = G(z)  # (B, 1, 28, 28); its graph is used once, by the generator step
    out = discriminator_step(D, opt["D"], real, fake)
    out.update(generator_step(D, opt["G"], fake))
    return out


def conditional_gan_step(trainer, batch) -> dict[str, Tensor]:
    """``Trainer`` step of a class-conditional GAN (Mirza & Osindero 2014) on (images, labels).

    As :func:`gan_step`, but both nets see the digit label: each fake is generated *for* the label
    of the real image at its position, so D compares real 3s with fakes asked to be 3s, and a fake
    that looks real but is not the requested digit is rejected (with
    :class:`~companion.models.dcgan.ProjectionDiscriminator`). ``trainer.model`` holds a
    :class:`~companion.models.dcgan.ConditionalDCGANGenerator` "G" and a conditional "D".
    """
    G, D, opt = _gan_parts(trainer)
    if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
        raise ValueError("conditional_gan_step needs batches of (images, labels); got images only")
    real = to_tanh_range(trainer.to_device(batch[0]))  # (B, 1, 28, 28) in [-1, 1]
    labels = trainer.to_device(torch.as_tensor(batch[1]))  # (B,) digits
    z = torch.randn(real.shape[0], G.z_dim).to(trainer.device)  # (B, z_dim)
    fake = G(z, labels)  # (B, 1, 28, 28), one per requested label
    out = discriminator_step(D, opt["D"], real, fake, labels)
    out.update(generator_step(D, opt["G"], fake, labels))
    return out


@dataclass
class SampleSnapshots:
    """``Trainer`` callback: after every epoch, the generator's images for one fixed noise batch."""

    z: Tensor
    labels: Tensor | None = None  # (n,) digits for a conditional generator
    images: list[Tensor] = field(default_factory=list)  # one (n, 1, 28, 28) tensor in [-1, 1] per epoch

    @torch.no_grad()
    def __call__(self, trainer, record) -> bool:
        G = trainer.model["G"]
        z = self.z.to(trainer.device)
        with eval_mode(G):
            labels = None if self.labels is None else self.labels.to(trainer.device)
            self.images.append(_apply(G, z, labels).cpu())
        return False


@torch.no_grad()
def generate(G: nn.Module, n: int, *, seed: int = 0, batch_size: int = 500, labels: Tensor | None = None) -> Tensor:
    """``n`` images in [-1, 1] from ``G`` (a :class:`DCGANGenerator`) in eval mode, from noise drawn with its own ``seed``.

    For a conditional generator pass ``labels`` (n,), the digit asked of each image.
    """
    if labels is not None and tuple(labels.shape) != (n,):
        raise ValueError(f"labels must hold one digit per image, shape ({n},); got {tuple(labels.shape)}")
    gen = torch.Generator().manual_seed(seed)
    chunks = []
    with eval_mode(G):
        for i in range(0, n, batch_size):
            z = G.sample_noise(min(batch_size, n - i), generator=gen)
            asked = None if labels is None else labels[i:i + batch_size].to(z.device)
            chunks.append(_apply(G, z, asked).cpu())
    return torch.cat(chunks)


def balanced_labels(n: int, num_classes: int = 10) -> Tensor:
    """``n`` labels, each class ``n / num_classes`` times (0, 1, ..., K-1, 0, 1, ...): exactly 10%
    per digit for ``n`` a multiple of 10, so a conditional generator is measured on every digit."""
    if n < 1 or n % num_classes:
        raise ValueError(f"n must be a positive multiple of num_classes={num_classes}; got {n}")
    return torch.arange(n) % num_classes



# --------------------------------------------------------------------------------------------
# Sample quality, measured with a classifier
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def classifier_outputs(classifier: nn.Module, images: Tensor, feature_layer: nn.Module,
                       batch_size: int = 500) -> tuple[Tensor, Tensor]:
    """Class probabilities (N, K) and penultimate features (N, F) for images in [0, 1].

    The features are the *input* of ``feature_layer`` (e.g. the last linear layer), captured
    with a forward pre-hook. The classifier runs in eval mode.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W); got {tuple(images.shape)}")
    captured: list[Tensor] = []
    handle = feature_layer.register_forward_pre_hook(lambda m, args: captured.append(args[0].flatten(1).cpu()))
    device = next(classifier.parameters()).device
    try:
        with eval_mode(classifier):
            probs = [F.softmax(classifier(images[i:i + batch_size].to(device)), dim=1).cpu()
                     for i in range(0, len(images), batch_size)]
    finally:
        handle.remove()
    if len(captured) != len(probs):
        raise ValueError("feature_layer was not called exactly once per forward pass; pass the classifier's last layer")
    return torch.cat(probs).double(), torch.cat(captured).double()


def class_histogram(probs: Tensor) -> Tensor:
    """Fraction of samples whose most probable class is each class: (K,), sums to 1."""
    k = probs.shape[1]
    return torch.bincount(probs.argmax(1), minlength=k).double() / len(probs)


def mean_confidence(probs: Tensor) -> float:
    """Mean over samples of the classifier's top probability."""
    return float(probs.max(1).values.mean())


def classifier_score(probs: Tensor, eps: float = 1e-12) -> float:
    """``exp(E_x KL(p(y|x) || p(y)))``, the Inception Score computed with another classifier.

    It lies between 1 (every sample gets the same prediction) and K (each sample is one
    class with certainty and all K classes are equally frequent).
    """
    if probs.ndim != 2 or len(probs) == 0:
        raise ValueError(f"probs must be a non-empty (N, K) matrix; got {tuple(probs.shape)}")
    p = probs.double().clamp_min(eps)
    marginal = p.mean(0, keepdim=True)  # (1, K) = p(y)
    kl = (p * (p.log() - marginal.log())).sum(1)  # (N,)
    return float(kl.mean().exp())


def _sqrtm_psd(matrix: Tensor) -> Tensor:
    """Square root of a symmetric positive semi-definite matrix, by eigendecomposition."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(features_a: Tensor, features_b: Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, F) and (M, F).

    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)``, computed in float64.
    """
    if features_a.ndim != 2 or features_b.ndim != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"feature sets must be (N, F) and (M, F); got {tuple(features_a.shape)} and {tuple(features_b.shape)}")
    if min(len(features_a), len(features_b)) < 2:
        raise ValueError("each feature set needs at least 2 rows to estimate a covariance")
    a, b = features_a.double(), features_b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.atleast_2d(torch.cov(a.T)), torch.atleast_2d(torch.cov(b.T))  # (F, F)
    root_a = _sqrtm_psd(cov_a)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()  # tr (S_a^1/2 S_b S_a^1/2)^1/2
    value = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return max(float(value), 0.0)


def quality_from_outputs(probs: Tensor, features: Tensor, reference_features: Tensor | None = None) -> dict[str, float]:
    """All the sample-quality numbers from a classifier's outputs (see :func:`classifier_outputs`).

    ``min_class_fraction`` (the rarest class's share; 0 means a missing digit) is the simplest
    mode-collapse alarm. ``frechet`` is measured against ``reference_features`` when given.
    """
    hist = class_histogram(probs)
    out = {"min_class_fraction": float(hist.min()), "classes_covered": int((hist > 0).sum()),
           "mean_confidence": mean_confidence(probs), "classifier_score": classifier_score(probs)}
    if reference_features is not None:
        out["frechet"] = frechet_distance(features, reference_features)
    return out


def sample_quality(classifier: nn.Module, images: Tensor, feature_layer: nn.Module,
                   reference_features: Tensor | None = None) -> dict[str, float]:
    """All the sample-quality numbers for images in [0, 1], in one dict (see :func:`quality_from_outputs`)."""
    probs, feats = classifier_outputs(classifier, images, feature_layer)
    return quality_from_outputs(probs, feats, reference_features)
