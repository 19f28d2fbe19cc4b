"""How much does augmenting per image in the Dataset cost, against one batched warp per batch?

Both sides draw a random rotation (+-10 deg), shift (+-10%) and zoom (0.9-1.1) for every one of
the 4,000 offline MNIST training digits, in batches of 64:

* ``v2.RandomAffine`` as the ``Dataset`` transform, one image at a time (chapter 06's first version);
* ``companion.augment.RandomAffineBatch`` on each loader batch (what chapter 06 then trains with).

For scale, one epoch of training chapter 06's ``MnistBNNet(width=12)`` on un-augmented batches is
timed too. Runs alternate so that drift in the machine's speed hits every side alike; CPU time
(``time.process_time``) is reported, medians over the runs.

    .venv/bin/python benchmarks/bench_augment.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torchvision.transforms import v2

from companion.augment import RandomAffineBatch
from companion.data import loaders, mnist
from companion.models import MnistBNNet
from companion.repro import seed_everything
from _common import machine_header


def per_image_epoch(loader) -> None:
    for images, _ in loader:  # the Dataset warps each image as it is fetched
        pass


def batched_epoch(loader, augment: RandomAffineBatch) -> None:
    for images, _ in loader:
        augment(images)


def training_epoch(loader, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    for images, labels in loader:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()


def cpu_seconds(fn, *args) -> float:
    start = time.process_time()
    fn(*args)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    seed_everything(0)
    per_image_loader, _ = loaders(mnist("train", transform=v2.RandomAffine(10, translate=(0.1, 0.1), scale=(0.9, 1.1))),
                                  batch_size=64, seed=0)
    plain_loader, _ = loaders(mnist("train"), batch_size=64, seed=0)
    augment = RandomAffineBatch(degrees=10, translate=0.1, scale=(0.9, 1.1))
    model = MnistBNNet(width=12)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    print(machine_header())
    print(f"# data: 4000 offline MNIST images, batch 64, one epoch per run, {args.runs} runs per side, "
          "interleaved; CPU seconds, medians")

    per_image_epoch(per_image_loader), batched_epoch(plain_loader, augment)  # warm-up
    sides = {"per image (v2.RandomAffine in the Dataset)": [], "batched (RandomAffineBatch)": [],
             "training MnistBNNet(12), no augmentation": []}
    for _ in range(args.runs):
        sides["per image (v2.RandomAffine in the Dataset)"].append(cpu_seconds(per_image_epoch, per_image_loader))
        sides["batched (RandomAffineBatch)"].append(cpu_seconds(batched_epoch, plain_loader, augment))
        sides["training MnistBNNet(12), no augmentation"].append(cpu_seconds(training_epoch, plain_loader, model, optimizer))
    medians = {name: statistics.median(times) for name, times in sides.items()}
    for name, m in medians.items():
        print(f"{name:44s} median {m:6.3f} s  mean {statistics.mean(sides[name]):6.3f} s")
    per_image, batched, train = medians.values()
    print(f"per image / batched augmentation: {per_image / batched:.1f}x")
    print(f"augmentation as a share of an augmented training epoch: per image {per_image / (per_image + train):.0%}, "
          f"batched {batched / (batched + train):.0%}")


if __name__ == "__main__":
    main()
