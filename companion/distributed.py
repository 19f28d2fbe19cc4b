"""Data-parallel training with ``torch.distributed``: one process per rank, launched by torchrun.

Data parallelism (Li et al. 2020, PyTorch DDP) keeps one full copy of the model in every process
("rank"), gives each rank a different shard of every batch, and averages the gradients across ranks
before each optimizer step. The average of the shard gradients of a loss that is a mean over the
batch equals the gradient of the whole batch, so k ranks with batch B/k take the same steps as one
process with batch B, up to the order of floating-point sums.

The same script runs on CPUs (the ``gloo`` backend) and on GPUs (``nccl``)::

    torchrun --standalone --nproc_per_node 2 -m companion.ddp_train --epochs 2 --out DIR

This module holds the small pieces such a script needs:

- :func:`setup` / :func:`teardown`: the process group, from the variables torchrun sets;
- :func:`wrap`: ``DistributedDataParallel`` around the model (it averages the gradients);
- :func:`loader`: a ``DistributedSampler`` loader whose ``batch_size`` is the *global* batch;
- :func:`launch`: run ``companion.ddp_train`` under torchrun from Python (a notebook cannot host
  the ranks itself) and return its result.

``companion.train.Trainer(..., distributed=env)`` does the rest: per-epoch reshuffling, metrics
averaged over all ranks, printing and checkpoint writing on rank 0 only.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

#: What torchrun sets in every rank's environment, and what :func:`setup` reads.
RENDEZVOUS_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
LAUNCH_HINT = ("launch with torchrun, e.g. `torchrun --standalone --nproc_per_node N -m companion.ddp_train "
               "...` (or companion.distributed.launch(N, ...) from Python)")


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in the job: its rank among ``world_size`` and its device."""

    rank: int
    local_rank: int  # rank on this machine: picks the GPU
    world_size: int
    backend: str  # "gloo" (CPU) or "nccl" (CUDA)
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 prints, and writes checkpoints and results, for everyone."""
        return self.rank == 0


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise RuntimeError(f"the environment variable {name}={value!r} is not an integer; "
                           f"{LAUNCH_HINT}") from None


def _pick_device(device: str | torch.device | None, local_rank: int) -> torch.device:
    """None -> this rank's GPU if there is one, else the CPU; "cuda" -> "cuda:<local rank>"."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {str(device)!r} was asked for but this machine has no usable "
                               "CUDA GPU; use device='cpu' (the gloo backend)")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def setup(device: str | torch.device | None = None, *, backend: str | None = None) -> DistEnv:
    """Join the process group described by torchrun's environment variables; return this rank's place.

    Args:
        device: ``None`` picks ``cuda:LOCAL_RANK`` when CUDA is available, else ``cpu``.
        backend: ``None`` picks ``nccl`` for CUDA devices and ``gloo`` for the CPU.

    Raises a ``RuntimeError`` naming the missing variables when the process was not started by
    torchrun, and when ``nccl`` is asked for on a machine without CUDA.
    """
    missing = [name for name in RENDEZVOUS_VARIABLES if name not in os.environ]
    if missing:
        raise RuntimeError(f"the rendezvous variables {', '.join(missing)} are not set: this process was not "
                           f"started by torchrun; {LAUNCH_HINT}")
    rank, local_rank, world_size = _env_int("RANK"), _env_int("LOCAL_RANK"), _env_int("WORLD_SIZE")
    if not 0 <= rank < world_size:
        raise RuntimeError(f"RANK={rank} is outside 0..WORLD_SIZE-1 (WORLD_SIZE={world_size}); {LAUNCH_HINT}")
    if backend == "nccl" and not torch.cuda.is_available():
        raise RuntimeError("the nccl backend needs CUDA GPUs and this machine has none; "
                           "use backend='gloo' (the default on CPU)")
    device = _pick_device(device, local_rank)
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size)
    return DistEnv(rank, local_rank, world_size, backend, device)


def teardown() -> None:
    """Leave the process group (a no-op when none was set up)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, env: DistEnv) -> nn.Module:
    """``DistributedDataParallel(model)`` on ``env.device``: gradients are averaged over the ranks.

    DDP copies rank 0's parameters to every rank when it is built, so all ranks start equal, and
    during ``backward`` all-reduces the gradients in buckets while later layers still compute.
    A world of one rank is still wrapped, so the 1-process run goes through the same code.
    """
    if not dist.is_initialized():
        raise RuntimeError("wrap() needs a process group: call companion.distributed.setup() first; "
                           + LAUNCH_HINT)
    model = model.to(env.device)
    device_ids = [env.device.index] if env.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def loader(
    dataset: Dataset,
    batch_size: int,
    env: DistEnv,
    *,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
    **kwargs,
) -> DataLoader:
    """A loader of this rank's shard: ``batch_size`` is the GLOBAL batch, split over the ranks.

    Each rank gets ``batch_size // world_size`` examples per step from a ``DistributedSampler``: one
    permutation per epoch (seeded by ``seed + epoch``; the ``Trainer`` calls ``set_epoch``), rank r
    taking positions r, r + world_size, ... So the ranks of step i together see exactly the batch
    i that one process with ``batch_size`` sees. When ``len(dataset)`` is not a multiple of
    ``world_size`` the sampler repeats a few examples so that every rank has as many (or, with
    ``drop_last=True``, drops the tail). Other keyword arguments go to ``DataLoader``.
    """
    if batch_size <= 0 or batch_size % env.world_size:
        raise ValueError(f"the global batch size {batch_size} must be a positive multiple of the world size "
                         f"{env.world_size}, so that every rank gets the same share; pick a batch size "
                         f"divisible by {env.world_size} or launch a different number of processes")
    sampler = DistributedSampler(dataset, num_replicas=env.world_size, rank=env.rank, shuffle=shuffle,
                                 seed=seed, drop_last=drop_last)
    return DataLoader(dataset, batch_size=batch_size // env.world_size, sampler=sampler, **kwargs)


def _failure_summary(stderr: str, lines: int = 25) -> str:
    """A rank's exception first (torchrun buries it in its own report), then the end of stderr."""
    errors = [line.strip() for line in stderr.splitlines()
              if re.match(r"\s*[\w.]*(Error|Exception|Exit)\b.*?: ", line)]
    tail = "\n".join(stderr.strip().splitlines()[-lines:])
    return f"{errors[-1] if errors else 'see below'}\n{tail}"


def launch(nproc: int, *args: str, timeout: float = 300) -> dict:
    """Run ``torchrun --standalone --nproc_per_node nproc -m companion.ddp_train *args``; return its result.

    ``--standalone`` picks a free port, so runs started at the same time do not collide. Without
    ``--out DIR`` among ``args`` a temporary folder is used. Returns the dict that rank 0 wrote to
    ``DIR/result.pt`` (see :mod:`companion.ddp_train`) plus ``"stdout"``, what rank 0 printed. A
    failed run raises ``RuntimeError`` with the end of its error output. The training digits are
    loaded once here and handed to the ranks as a file (``--digits``), unless ``args`` name one.
    """
    if nproc < 1:
        raise ValueError(f"nproc must be at least 1, got {nproc}")
    args = tuple(str(a) for a in args)
    with tempfile.TemporaryDirectory(prefix="ddp_") as tmp:
        if "--out" not in args:
            args = (*args, "--out", tmp)
        if "--digits" not in args:  # load the digits once here, not once per rank
            from companion.ddp_train import save_digits

            args = (*args, "--digits", str(save_digits(Path(tmp) / "digits.pt")))
        out = Path(args[args.index("--out") + 1])
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               "-m", "companion.ddp_train", *args]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"{' '.join(cmd)} did not finish within {timeout} s") from exc
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed (exit code {done.returncode}): "
                               f"{_failure_summary(done.stderr)}")
        result = torch.load(out / "result.pt", weights_only=True)
    result["stdout"] = done.stdout
    return result
