"""Reproducibility: what one call can pin of a chapter's printed numbers, and what it cannot.

:func:`seed_everything` pins, for one machine and one set of package versions:

- the random streams of Python, NumPy and PyTorch (weights, shuffling, dropout, augmentation);
- the number of intra-op threads, and with it the order in which PyTorch splits a reduction,
  so a run prints the same on a 2-core laptop and a 64-core server;
- how tensors and arrays print (4 decimals, no scientific notation).

It does **not** pin the instruction set. PyTorch, oneDNN, MKL/OpenBLAS and NumPy each pick kernels
for the CPU they run on (SSE4, AVX2, AVX-512, ARM NEON/SVE), and those kernels sum in different
orders, so float32 results differ in the last bits from one kind of CPU to another. Training
amplifies such differences: after a few epochs a digit near the decision boundary can change its
predicted class, and each such digit moves an accuracy on 1,000 test digits by 0.001. That is why
the chapters print results of training in cells whose output is not compared and hold them with
check cells (``assert acc >= 0.90``), and why CI runs every notebook a second time under another
instruction set (``make nbval-isa``). Nor does it pin GPU kernels, which are not bit-identical to
CPU ones (see ``torch.use_deterministic_algorithms``).
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

#: Threads used by default. CI machines have two cores; a fixed count also fixes the order
#: in which PyTorch splits reductions, so printed numbers do not depend on the machine's size.
DEFAULT_THREADS = 2


def seed_everything(seed: int = 0, threads: int | None = DEFAULT_THREADS) -> torch.Generator:
    """Seed Python, NumPy and PyTorch, fix the thread count and the print precision.

    Same machine, same versions: same numbers. Another CPU: the same within the tolerances of
    the chapters' check cells (see the module docstring for why not bit for bit).

    Returns a fresh ``torch.Generator`` seeded with ``seed``, handy for ``DataLoader(generator=...)``
    so that the shuffling order is reproducible independently of the global RNG.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA when present
    if threads is not None:
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_printoptions(precision=4, sci_mode=False)
    np.set_printoptions(precision=4, suppress=True)
    return torch.Generator().manual_seed(seed)


def pick_device(requested: str = "cpu") -> torch.device:
    """Return ``requested`` as a device, with a clear error when it is not available here."""
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"DEVICE={requested!r} was requested but this machine has no usable CUDA GPU; "
            "set DEVICE = 'cpu' in the chapter's parameters cell."
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"DEVICE={requested!r} was requested but MPS is not available; use 'cpu'.")
    return device
