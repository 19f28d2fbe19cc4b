"""Reproducibility: one call that pins everything a chapter's printed numbers depend on."""

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
