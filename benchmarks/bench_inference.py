"""Inference throughput of the MNIST CNN on CPU: eager vs torch.export vs ONNX Runtime.

    .venv/bin/python benchmarks/bench_inference.py [--runs 5] [--seconds 0.5] [--threads 2]

Prints a header (machine, versions, threads, runs) and, for batch sizes 1 and 64, the mean and
standard deviation over ``--runs`` of images per second, plus each exported form's speed-up over
eager PyTorch *measured in the same run* (absolute numbers depend on the machine and its load;
the ratios are what to compare between machines). Inputs are real held-out MNIST digits.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from companion import export
from companion.data import mnist
from companion.models import MnistCNN
from companion.repro import seed_everything
from _common import cpu_model

BATCH_SIZES = (1, 64)


def images_per_second(fn, batch: torch.Tensor, seconds: float) -> float:
    """Call ``fn(batch)`` repeatedly for about ``seconds``; return images processed per second."""
    with torch.no_grad():
        fn(batch)  # warm-up: first-call allocations and lazy initialisation
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            fn(batch)
            n += batch.shape[0]
    return n / elapsed


def header(args: argparse.Namespace) -> str:
    import onnxruntime

    cpu = cpu_model()
    return "\n".join([
        "# bench_inference: MnistCNN (1x28x28 -> 10 logits), real held-out MNIST digits",
        f"# machine: {platform.node()} | {cpu} | {os.cpu_count()} logical CPUs | {platform.system()} {platform.release()}",
        f"# load average at start: {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "# load average: n/a",
        f"# versions: python {platform.python_version()}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}",
        f"# threads: {args.threads} | runs: {args.runs} x {args.seconds:.2f} s per cell | statistic: mean (sd) images/s",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5, help="duration of one run")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    seed_everything(0, threads=args.threads)

    model = MnistCNN().eval()  # speed does not depend on the weights' values
    x, _ = mnist("test").tensors()
    x = (x - 0.1311) / 0.3083
    with tempfile.TemporaryDirectory() as tmp:
        export.export_program(model, x[:2], Path(tmp) / "m.pt2")
        program = export.load_program(Path(tmp) / "m.pt2")
        onnx_fn = export.onnx_runner(export.export_onnx(model, x[:2], Path(tmp) / "m.onnx"))
        forms = {"eager": model, "torch.export": program, "onnxruntime": onnx_fn}
        for fn in forms.values():  # same outputs before timing anything
            export.check_equivalence(model, fn, [x[:64]], atol=1e-4)

        print(header(args))
        print(f"{'form':<13} {'batch':>5} {'images/s':>18} {'vs eager':>9}")
        for b in BATCH_SIZES:
            batch = x[:b]
            means = {}
            for name, fn in forms.items():
                rates = [images_per_second(fn, batch, args.seconds) for _ in range(args.runs)]
                means[name] = statistics.mean(rates)
                sd = statistics.stdev(rates) if len(rates) > 1 else 0.0
                print(f"{name:<13} {b:>5} {means[name]:>10.0f} ({sd:>5.0f}) {means[name] / means['eager']:>8.2f}x")


if __name__ == "__main__":
    main()
