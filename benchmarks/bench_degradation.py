"""Does chapter 9's deeper plain network only start slower, or does it stay worse?

Chapter 9 trains plain and residual CIFAR-style networks of depths 8 and 32 for 3
epochs, which shows how fast each one starts, not where it ends. This script trains the
same four networks with the chapter's settings for longer (same seed and data order, one
thread, the 3,500 training digits left after ``train_val_split``, area-downsampled to
14x14, width 8, batch 64, SGD with learning rate 0.1, momentum 0.9, weight decay 1e-4,
no schedule) and prints, for every epoch, each network's mean training loss and its
accuracy on the 500 validation digits. A second table runs exercise 1 of the chapter
(``DEPTHS = (8, 56)``) for its 3 epochs: the depth-56 networks. The test digits are not
used.

    .venv/bin/python benchmarks/bench_degradation.py [--epochs 20] [--depths 8 32]
        [--exercise-depth 56] [--exercise-epochs 3]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from companion.data import loaders, mnist, train_val_split
from companion.models import resnet as R
from companion.repro import seed_everything
from companion.train import Trainer
from _common import machine_header

SEED, WIDTH, IMAGE_SIZE, LR, THREADS = 0, 8, 14, 0.1, 1  # chapter 9's settings
KINDS = ("plain", "residual")


def as_tensor_dataset(ds) -> TensorDataset:
    """Chapter 9's input: digits averaged down from 28x28 to IMAGE_SIZE x IMAGE_SIZE."""
    images, labels = ds.tensors()  # (N, 1, 28, 28)
    images = F.interpolate(images, size=(IMAGE_SIZE, IMAGE_SIZE), mode="area")
    return TensorDataset(images, labels)


def run(kind: str, depth: int, epochs: int, train_ds, val_ds) -> tuple[list, float]:
    """Train one network as chapter 9 does; return per-epoch records and CPU seconds."""
    torch.manual_seed(SEED)
    builder = R.cifar_resnet if kind == "residual" else R.plain_cifar
    model = builder(depth, num_classes=10, in_channels=1, width=WIDTH)
    train_loader, val_loader = loaders(train_ds, val_ds, batch_size=64, seed=SEED)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9,
                                weight_decay=1e-4)
    trainer = Trainer(model, optimizer, nn.CrossEntropyLoss(), progress="off")
    start = time.process_time()
    history = trainer.fit(train_loader, val_loader, epochs=epochs)
    cpu = time.process_time() - start
    records = list(zip(history["train_loss"], history["train_acc"], history["val_acc"]))
    return records, cpu


def table(names: list[str], results: dict, epochs: int) -> list[str]:
    """One row per epoch: training loss and validation accuracy of every network."""
    head = "epoch " + "".join(f" {n + ' loss':>15s}" for n in names)
    head += "".join(f" {n + ' val':>15s}" for n in names)
    rows = [head]
    for e in range(epochs):
        row = f"{e + 1:5d} " + "".join(f"{results[n][0][e][0]:>16.4f}" for n in names)
        row += "".join(f"{results[n][0][e][2]:>16.3f}" for n in names)
        rows.append(row)
    rows.append("CPU s " + "".join(f"{results[n][1]:>16.0f}" for n in names))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--depths", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--exercise-depth", type=int, default=56)
    parser.add_argument("--exercise-epochs", type=int, default=3)
    args = parser.parse_args()

    seed_everything(SEED, threads=THREADS)
    train_part, val_part = train_val_split(mnist("train"))
    train_ds, val_ds = as_tensor_dataset(train_part), as_tensor_dataset(val_part)
    print(machine_header())
    print(f"# chapter 9's degradation experiment run longer: {len(train_ds)} training "
          f"and {len(val_ds)} validation digits at {IMAGE_SIZE}x{IMAGE_SIZE}, "
          f"width {WIDTH}, batch 64, SGD lr {LR} momentum 0.9 wd 1e-4, no schedule;")
    print("# loss = mean training loss of the epoch, val = validation accuracy then")

    names = [f"{k}-{d}" for k in KINDS for d in args.depths]
    results = {f"{k}-{d}": run(k, d, args.epochs, train_ds, val_ds)
               for k in KINDS for d in args.depths}
    print("\n".join(table(names, results, args.epochs)), flush=True)

    d = args.exercise_depth
    print(f"# exercise 1: depth {d}, {args.exercise_epochs} epochs "
          "(train acc in parentheses)")
    for k in KINDS:
        records, cpu = run(k, d, args.exercise_epochs, train_ds, val_ds)
        shown = "  ".join(f"{loss:.4f} ({acc:.3f})" for loss, acc, _ in records)
        print(f"{k}-{d:<3} train loss per epoch: {shown}  val {records[-1][2]:.3f}  "
              f"CPU s {cpu:.0f}", flush=True)


if __name__ == "__main__":
    main()
