"""Chapter 12's class-conditional DCGAN at the unconditional plateau's budgets (epochs 5, 10, ... 40).

``bench_gan_budget.py`` shows the unconditional DCGAN's judge confidence plateauing near 0.8. This
script trains the chapter's conditional DCGAN (the same widths G 16 / D 32, batch 32, Adam 2e-4
with betas (0.5, 0.999), seed and one thread; a label embedding of 50 numbers in the generator and
a projection discriminator) for the same numbers of epochs and measures it with the same judge:
agreement between the requested and the judged digit and mean confidence on 1,000 samples (100
asked of each digit), rarest judged digit, classifier score and Frechet distance on the first 500
of them (50 asked of each digit) against the same 500 real held-out digits as
``bench_gan_budget``, in that script's columns (the agreement is printed under the table). Its
first rows repeat the chapter's run (the chapter stops at ``COND_EPOCHS``).

One run measures the conditional model only; the unconditional rows to compare with are in
``results/bench_gan_budget.txt`` (an earlier run of the same loop and judge). So that the CPU
seconds of the two files can be compared although the machine's load differed, this run also
times 40 training steps of each model, interleaved, and prints their ratio.

    .venv/bin/python benchmarks/bench_gan_conditional.py [--epochs 40] [--every 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from companion import gan
from companion.data import loaders, mnist
from companion.metrics import accuracy
from companion.models import dcgan
from companion.models.dcgan import conditional_dcgan
from companion.repro import seed_everything
from companion.train import Trainer
from _common import machine_header
from bench_gan_budget import SEED, THREADS, Z_DIM, judged_reference

G_WIDTH, D_WIDTH, BATCH, EMBED_DIM = 16, 32, 32, 50  # chapter 12's settings


def gan_trainer(model, step_fn) -> Trainer:
    """A Trainer with the chapter's two Adam optimisers."""
    opt = {k: torch.optim.Adam(model[k].parameters(), lr=2e-4, betas=(0.5, 0.999)) for k in ("G", "D")}
    return Trainer(model, opt, step_fn=step_fn, progress="off")


def step_cost_ratio(train_set, steps: int = 40) -> float:
    """CPU seconds per conditional step / per unconditional step, interleaved in this process."""
    plain = gan_trainer(dcgan(Z_DIM, G_WIDTH, D_WIDTH), gan.gan_step)
    cond = gan_trainer(conditional_dcgan(Z_DIM, G_WIDTH, D_WIDTH, embed_dim=EMBED_DIM), gan.conditional_gan_step)
    loader, _ = loaders(train_set, batch_size=BATCH, seed=SEED)
    batches = [b for _, b in zip(range(steps), loader)]
    spent = {"plain": 0.0, "cond": 0.0}
    for batch in batches:
        for name, trainer, fn in (("plain", plain, gan.gan_step), ("cond", cond, gan.conditional_gan_step)):
            start = time.process_time()
            fn(trainer, batch)
            spent[name] += time.process_time() - start
    return spent["cond"] / spent["plain"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--every", type=int, default=5)
    args = parser.parse_args(argv)

    train_set, test_set = mnist("train"), mnist("test")
    judged = judged_reference(train_set, test_set)
    classifier, feature_layer, reference = judged.classifier, judged.feature_layer, judged.reference
    judge_acc, real, half = judged.accuracy, judged.real, judged.half
    ratio = step_cost_ratio(train_set)

    seed_everything(SEED, threads=THREADS)
    model = conditional_dcgan(Z_DIM, G_WIDTH, D_WIDTH, embed_dim=EMBED_DIM)
    train_loader, _ = loaders(train_set, batch_size=BATCH, seed=SEED)
    trainer = gan_trainer(model, gan.conditional_gan_step)
    labels = gan.balanced_labels(2 * half)

    print(machine_header())
    print(f"# one run: conditional DCGAN widths G {G_WIDTH} / D {D_WIDTH}, embedding {EMBED_DIM}, batch {BATCH}, "
          f"{len(train_loader)} steps per epoch; judge accuracy {judge_acc:.3f}; {len(labels)} generated digits "
          f"(100 asked of each), the first {half} against {half} real held-out digits for the last three columns")
    print(f"# CPU s per conditional step / per unconditional step, measured in this run: {ratio:.2f}")
    print(f"{'epochs':>6s} {'GAN CPU s':>9s} {'min class':>9s} {'confidence':>10s} {'cls score':>9s} {'Frechet':>8s}")
    print(f"{'real':>6s} {'':>9s} {real['min_class_fraction']:9.3f} {real['mean_confidence']:10.3f} "
          f"{real['classifier_score']:9.2f} {real['frechet']:8.1f}")
    cpu, agreement = 0.0, []
    for epoch in range(args.every, args.epochs + 1, args.every):
        start = time.process_time()
        trainer.fit(train_loader, epochs=epoch)
        cpu += time.process_time() - start
        fake = gan.to_unit_range(gan.generate(model["G"], len(labels), seed=SEED + 3, labels=labels))
        probs, feats = gan.classifier_outputs(classifier, fake, feature_layer)
        q = gan.quality_from_outputs(probs[:half], feats[:half], reference)
        agreement.append(f"{epoch} epochs {float(accuracy(probs, labels)):.3f}")
        print(f"{epoch:6d} {cpu:9.0f} {q['min_class_fraction']:9.3f} {gan.mean_confidence(probs):10.3f} "
              f"{q['classifier_score']:9.2f} {q['frechet']:8.1f}", flush=True)
    print(f"agreement of the judge with the requested digit (all {len(labels)}): {', '.join(agreement)}")
    print("targets: agreement >= 0.9, confidence (all samples) >= 0.9, Frechet below the unconditional run's")

if __name__ == "__main__":
    main()
