"""How much time does companion.train.Trainer add over a plain PyTorch loop?

Both loops train the same MnistCNN on the same offline MNIST batches (batch 64, SGD with momentum),
from the same initial weights, for the same number of epochs. Runs alternate (plain, trainer, plain,
trainer, ...) so that drift in the machine's speed hits both alike; the ratio of the medians is
printed. Target: under 3% extra time (ratio < 1.03).

    .venv/bin/python benchmarks/bench_trainer.py [--runs 5] [--epochs 1]

The header printed first records the evidence: machine, versions, threads, number of runs.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from companion.data import mnist
from companion.models import MnistCNN
from companion.repro import seed_everything
from companion.train import Trainer
from _common import machine_header


def plain_loop(model: nn.Module, loader: DataLoader, epochs: int) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()


def trainer_loop(model: nn.Module, loader: DataLoader, epochs: int) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    Trainer(model, opt, nn.CrossEntropyLoss(), progress="off").fit(loader, epochs=epochs)


def timed(fn, model: nn.Module, loader: DataLoader, epochs: int) -> float:
    start = time.perf_counter()
    fn(model, loader, epochs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()

    seed_everything(0)
    images, labels = mnist("train").tensors()
    # Tensors in memory, so both loops measure training, not image decoding.
    loader = DataLoader(TensorDataset(images, labels), batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    init = MnistCNN()

    print(machine_header())
    print(f"# data: {len(images)} offline MNIST images, batch 64, {args.epochs} epoch(s) per run, "
          f"{args.runs} runs per loop, interleaved")

    timed(plain_loop, copy.deepcopy(init), loader, 1)  # warm-up: allocator, kernels
    plain, trainer = [], []
    for _ in range(args.runs):
        plain.append(timed(plain_loop, copy.deepcopy(init), loader, args.epochs))
        trainer.append(timed(trainer_loop, copy.deepcopy(init), loader, args.epochs))
    p, t = statistics.median(plain), statistics.median(trainer)
    print(f"plain loop  median {p:.3f} s  mean {statistics.mean(plain):.3f} s")
    print(f"Trainer     median {t:.3f} s  mean {statistics.mean(trainer):.3f} s")
    print(f"overhead ratio (Trainer / plain, medians): {t / p:.3f}  (target < 1.03)")


if __name__ == "__main__":
    main()
