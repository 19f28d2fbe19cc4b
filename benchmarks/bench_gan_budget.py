"""What does more CPU time buy chapter 12's DCGAN? Sample quality against training epochs.

Chapter 12 trains its DCGAN for 10 epochs so that the chapter stays within its CPU budget, and
its samples miss the targets first set for it (every digit >= 5% of samples, mean classifier
confidence >= 0.9); the chapter's check cell holds the measured values as floors instead. By
default this script trains the chapter's GAN for longer: same seed, one thread, batch 32, Adam
2e-4 with betas (0.5, 0.999), generator width 16, discriminator width 32, the 4,000 offline
training digits. Other widths and batch sizes are options
(``bench_gan_reference_width.py`` runs the reference article's networks). Every few epochs it
measures the chapter's numbers with the chapter's judge (the small CNN, 5 epochs), each next to
the number for real held-out digits. Each row also prints the CPU seconds spent on GAN training
so far. ``bench_gan_conditional.py`` runs the chapter's class-conditional DCGAN at the same
budgets.

    .venv/bin/python benchmarks/bench_gan_budget.py [--epochs 40] [--every 5] [--g-width 16]
        [--d-width 32] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from companion import gan
from companion.data import loaders, mnist, train_val_split
from companion.models import dcgan
from companion.repro import seed_everything
from companion.train import Trainer
from _common import machine_header

SEED, Z_DIM, THREADS = 0, 100, 1  # chapter 12's settings


def judge(train_set, test_set) -> tuple[nn.Module, float]:
    """Chapter 12's evaluation classifier: a small CNN, 5 epochs of Adam.

    As in the chapter, it trains on the training split without its validation part
    (``train_val_split``), validates on that part after every epoch, and is scored on the test
    digits once, at the end; the returned accuracy is that test accuracy.
    """
    seed_everything(SEED, threads=THREADS)
    classifier = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10),
    )
    fit_part, val_part = train_val_split(train_set)
    train, val = loaders(fit_part, val_part, batch_size=64, seed=SEED)
    trainer = Trainer(classifier, torch.optim.Adam(classifier.parameters(), lr=1e-3),
                      nn.CrossEntropyLoss(), progress="off")
    trainer.fit(train, val, epochs=5)
    _, test = loaders(fit_part, test_set, batch_size=64, seed=SEED)
    return classifier, trainer.evaluate(test)["acc"]


@dataclass
class Judged:
    """The judge and the real held-out digits that generated ones are measured against."""

    classifier: nn.Module
    accuracy: float  # the judge's test accuracy
    feature_layer: nn.Module  # the Frechet distance is taken on this layer's outputs
    reference: Tensor  # features of the second half of the real test digits
    real: dict  # quality of the first half of the real digits against the reference
    half: int  # how many digits each row compares


def judged_reference(train_set, test_set) -> Judged:
    """Train the judge, then split the real test digits: one half is the Frechet reference, the
    other the 'real' row that bounds what generated digits can reach."""
    classifier, judge_acc = judge(train_set, test_set)
    feature_layer = classifier[-1]
    real_images, _ = test_set.tensors()
    half = len(real_images) // 2
    real_probs, real_feats = gan.classifier_outputs(classifier, real_images, feature_layer)
    reference = real_feats[half:]  # the second half of the real digits is the reference set
    real = gan.quality_from_outputs(real_probs[:half], real_feats[:half], reference)
    return Judged(classifier, judge_acc, feature_layer, reference, real, half)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--g-width", type=int, default=16, help="generator width (64 = the reference)")
    parser.add_argument("--d-width", type=int, default=32, help="discriminator width (64 = the reference)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)

    train_set, test_set = mnist("train"), mnist("test")
    judged = judged_reference(train_set, test_set)
    classifier, feature_layer, reference = judged.classifier, judged.feature_layer, judged.reference
    judge_acc, real, half = judged.accuracy, judged.real, judged.half

    seed_everything(SEED, threads=THREADS)
    model = dcgan(Z_DIM, args.g_width, args.d_width)
    optimizers = {k: torch.optim.Adam(model[k].parameters(), lr=2e-4, betas=(0.5, 0.999)) for k in ("G", "D")}
    train_loader, _ = loaders(train_set, batch_size=args.batch_size, seed=SEED)
    trainer = Trainer(model, optimizers, step_fn=gan.gan_step, progress="off")

    print(machine_header())
    print(f"# one run: DCGAN widths G {args.g_width} / D {args.d_width}, batch {args.batch_size}, {len(train_loader)} steps per epoch; judge accuracy "
          f"{judge_acc:.3f}; {half} generated vs {half} real held-out digits per row")
    print(f"{'epochs':>6s} {'GAN CPU s':>9s} {'min class':>9s} {'confidence':>10s} {'cls score':>9s} {'Frechet':>8s}")
    print(f"{'real':>6s} {'':>9s} {real['min_class_fraction']:9.3f} {real['mean_confidence']:10.3f} "
          f"{real['classifier_score']:9.2f} {real['frechet']:8.1f}")
    cpu = 0.0
    for epoch in range(args.every, args.epochs + 1, args.every):
        start = time.process_time()
        trainer.fit(train_loader, epochs=epoch)
        cpu += time.process_time() - start
        fake = gan.to_unit_range(gan.generate(model["G"], half, seed=SEED + 3))
        q = gan.sample_quality(classifier, fake, feature_layer, reference)
        print(f"{epoch:6d} {cpu:9.0f} {q['min_class_fraction']:9.3f} {q['mean_confidence']:10.3f} "
              f"{q['classifier_score']:9.2f} {q['frechet']:8.1f}", flush=True)
    print("targets: min class >= 0.05 and confidence >= 0.9")


if __name__ == "__main__":
    main()
