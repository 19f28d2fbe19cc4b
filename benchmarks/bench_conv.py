"""Companion ``conv2d`` vs ``torch.nn.functional.conv2d``: forward + backward, as a ratio.

    .venv/bin/python benchmarks/bench_conv.py [--runs 50] [--batch 64]

Shapes are the two convolutions of the book's MNIST network (companion.models.MnistCNN) on a
training batch of 64: conv1 1->10 5x5 on 28x28 and conv2 10->20 5x5 on 12x12, float32, CPU,
1 thread by default (``--threads 2`` for the book's setting). CPU time by default (``--clock wall``
for wall time): the machine this was written on was shared, and CPU time is what a shared machine
does not distort. Also times the naive unfold+matmul version the chapter starts from (autograd through
``F.unfold``). Every variant is timed in the same run, interleaved, after a warm-up; the printed
numbers are ratios to ``F.conv2d`` from this one run. This is a measurement, never a test.

One run on the machine the book was written on (shared with other jobs, hence CPU time)::

    # machine: AMD EPYC, 2 logical CPUs, Linux x86_64, torch 2.14.1+cu130, threads 1, python 3.11.7
    # float32, batch 64, forward+backward, 100 interleaved runs after 5 warm-up runs
    conv1 (B,1,28,28)*(10,1,5,5)    F.conv2d 10.9 ms   companion 0.99x   naive unfold+matmul 1.42x
    conv2 (B,10,12,12)*(20,10,5,5)  F.conv2d  5.7 ms   companion 2.16x   naive unfold+matmul 3.43x
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from companion import ops
from _common import cpu_model

#: CPU time of this process (all threads), robust when other jobs share the machine; --clock wall
#: switches to wall-clock time.
CLOCK = time.process_time

SHAPES = {  # name: (input shape without batch, weight shape)
    "conv1 (B,1,28,28)*(10,1,5,5)": ((1, 28, 28), (10, 1, 5, 5)),
    "conv2 (B,10,12,12)*(20,10,5,5)": ((10, 12, 12), (20, 10, 5, 5)),
}


def unfold_conv2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The naive im2col convolution: F.unfold + matmul, backward left to autograd."""
    B, _, H, W = x.shape
    o, _, kh, kw = w.shape
    cols = F.unfold(x, (kh, kw))  # (B, C*kh*kw, L)
    out = w.view(o, -1) @ cols + b.view(1, -1, 1)
    return out.view(B, o, H - kh + 1, W - kw + 1)


def fwd_bwd(fn, x, w, b) -> float:
    for t in (x, w, b):
        t.grad = None
    start = CLOCK()
    fn(x, w, b).sum().backward()
    return CLOCK() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    variants = {"F.conv2d": F.conv2d, "companion.ops.conv2d": ops.conv2d, "naive unfold+matmul": unfold_conv2d}

    print(f"# machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, python {platform.python_version()}")
    print(f"# float32, batch {args.batch}, forward+backward, {args.runs} interleaved runs after 5 warm-up runs; "
          f"mean {args.clock} time per run, ratio = mean / mean(F.conv2d)")
    for name, (in_shape, w_shape) in SHAPES.items():
        x = torch.randn(args.batch, *in_shape, requires_grad=True)
        w = torch.randn(*w_shape, requires_grad=True)
        b = torch.randn(w_shape[0], requires_grad=True)
        ref = F.conv2d(x, w, b)
        for fn in variants.values():  # same numbers before timing anything
            torch.testing.assert_close(fn(x, w, b), ref, rtol=1e-4, atol=1e-4)
        times: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(5):
            for fn in variants.values():
                fwd_bwd(fn, x, w, b)
        for _ in range(args.runs):
            for k, fn in variants.items():
                times[k].append(fwd_bwd(fn, x, w, b))
        base = statistics.mean(times["F.conv2d"])
        print(f"\n{name}")
        for k, ts in times.items():
            m = statistics.mean(ts)
            print(f"  {k:22s} mean {m * 1e3:8.3f} ms   ratio {m / base:5.2f}x")


if __name__ == "__main__":
    main()
