"""Shared by the benchmark scripts: the header lines that record what a result was measured on.

Not a benchmark itself (only ``bench_*.py`` files are run by ``make benchmarks``). The scripts are
run as ``python benchmarks/bench_x.py``, so this folder is on ``sys.path`` and they import it as
``_common``.
"""

from __future__ import annotations

import os
import platform

import torch


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine_header() -> str:
    """Two comment lines: machine, cores and torch threads; Python and torch versions."""
    return (f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch threads {torch.get_num_threads()}\n"
            f"# python {platform.python_version()}, torch {torch.__version__}")
