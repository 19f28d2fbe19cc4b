"""The book's training loop: a small ``Trainer`` that returns a ``History``.

The user brings a model, an optimizer and a loss (or a custom step function, e.g. for a GAN's two
optimizers). The trainer owns what every chapter would otherwise repeat: device placement,
``train()`` / ``eval()`` modes, ``no_grad`` at evaluation, metric averaging, a progress display,
and checkpoints that resume to exactly the same parameters as an uninterrupted run.

Hooks are deliberately few: a custom ``step_fn`` / ``eval_fn`` and ``callbacks`` called once at
the end of every epoch (return ``True`` from one to stop early).

One option runs the same loop in every rank of a data-parallel job (``distributed=env``, see
:mod:`companion.distributed`); without it nothing of that code runs.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .metrics import accuracy

if TYPE_CHECKING:  # imported for the annotation only
    from .distributed import DistEnv

StepFn = Callable[["Trainer", Any], Mapping[str, Tensor | float]]
MetricFn = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[["Trainer", dict], bool | None]
CHECKPOINT_FORMAT = "companion.trainer/1"


# --------------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------------
@dataclass
class History:
    """One record (a dict of floats) per epoch; ``history["val_acc"]`` is that metric's curve."""

    records: list[dict[str, float]] = field(default_factory=list)

    def append(self, record: dict[str, float]) -> None:
        self.records.append(dict(record))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: str) -> list[float]:
        if not self.records or key not in self.records[-1]:
            raise KeyError(f"no metric {key!r} in this history; it has {self.keys()}")
        return [r[key] for r in self.records if key in r]

    def keys(self) -> list[str]:
        return list(self.records[-1]) if self.records else []

    @property
    def last(self) -> dict[str, float]:
        return self.records[-1]

    def best(self, key: str, mode: str = "max") -> float:
        values = self[key]
        return max(values) if mode == "max" else min(values)

    def to_dict(self) -> dict:
        return {"records": [dict(r) for r in self.records]}

    @classmethod
    def from_dict(cls, data: Mapping) -> "History":
        return cls([dict(r) for r in data["records"]])

    def plot(self, keys: Sequence[str] | None = None, ax=None, title: str | None = None):
        """Plot the curves (losses on the left axis, other metrics on the right); returns the figure."""
        import matplotlib.pyplot as plt

        from companion.plotting import MAX_WIDTH_IN

        keys = [k for k in (keys or self.keys()) if k not in ("epoch", "seconds")]
        losses = [k for k in keys if "loss" in k]
        others = [k for k in keys if "loss" not in k]
        epochs = self["epoch"]
        if ax is None:
            # The book's figure width (companion.plotting.MAX_WIDTH_IN) for two panels, half of it for one.
            width = MAX_WIDTH_IN if losses and others else MAX_WIDTH_IN / 2
            fig, axes = plt.subplots(1, 2 if losses and others else 1, figsize=(width, 3.2))
            axes = list(np.atleast_1d(axes))
        else:
            fig, axes = ax.figure, [ax, ax]
        for axis, group, label in ((axes[0], losses, "loss"), (axes[-1], others, "metric")):
            for k in group:
                axis.plot(epochs, self[k], marker="o", label=k)
            if group:
                axis.set_xlabel("epoch")
                axis.set_ylabel(label)
                axis.legend()
                axis.grid(alpha=0.3)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return fig


# --------------------------------------------------------------------------------------------
# Eval mode for a block of code
# --------------------------------------------------------------------------------------------
@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run a ``with`` block with ``model`` in eval mode, then put it back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------------------------
# Default steps: supervised classification
# --------------------------------------------------------------------------------------------
def supervised_step(trainer: "Trainer", batch) -> dict[str, Tensor]:
    """One optimisation step on a batch ``(x, y)``: forward, loss, backward, update."""
    x, y = trainer.to_device(batch)
    logits = trainer.model(x)  # (B, classes)
    loss = trainer.loss_fn(logits, y)
    trainer.optimizer.zero_grad(set_to_none=True)  # forget the previous batch's gradients
    loss.backward()  # d loss / d parameter, for every parameter
    trainer.optimizer.step()  # move each parameter against its gradient
    return {"loss": loss, **{name: fn(logits.detach(), y) for name, fn in trainer.metrics.items()}}


def supervised_eval(trainer: "Trainer", batch) -> dict[str, Tensor]:
    """Loss and metrics on a batch, with no update (called in eval mode under ``no_grad``)."""
    x, y = trainer.to_device(batch)
    logits = trainer.model(x)
    out = {name: fn(logits, y) for name, fn in trainer.metrics.items()}
    if trainer.loss_fn is not None:
        out = {"loss": trainer.loss_fn(logits, y), **out}
    return out


def _batch_size(batch) -> int:
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    return int(first.shape[0]) if isinstance(first, Tensor) and first.ndim > 0 else 1


def _progress_mode(progress: bool | str | None) -> str:
    if progress is None:
        progress = os.environ.get("COMPANION_PROGRESS", "bar")
    if progress is True:
        return "bar"
    if progress is False:
        return "off"
    if progress not in ("bar", "line", "off"):
        raise ValueError(f"progress must be True, False, 'bar', 'line' or 'off'; got {progress!r}")
    return progress


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------
class Trainer:
    """Fit a model; see the module docstring.

    Args:
        model: the network (use ``nn.ModuleDict`` for several, e.g. a GAN's generator and critic).
        optimizer: one optimizer, or a dict of them for a custom ``step_fn``.
        loss_fn: e.g. ``nn.CrossEntropyLoss()``; used by the default steps.
        step_fn: ``step_fn(trainer, batch) -> {name: value}``; replaces :func:`supervised_step`.
        eval_fn: ``eval_fn(trainer, batch) -> {name: value}``; replaces :func:`supervised_eval`.
        scheduler: a learning-rate scheduler stepped once per epoch.
        device: ``"cpu"``, ``"cuda"``, ...
        metrics: name -> ``fn(logits, targets)``; default ``{"acc": accuracy}``.
        callbacks: called as ``cb(trainer, record)`` after every epoch; return ``True`` to stop.
        progress: ``"bar"`` (tqdm: a widget in JupyterLab), ``"line"`` (one printed line per
            epoch, as in the book), ``"off"``; default from ``$COMPANION_PROGRESS``, else ``"bar"``.
        distributed: this rank's ``companion.distributed.DistEnv`` in a data-parallel job (the
            model wrapped by ``distributed.wrap``, the loader from ``distributed.loader``). Then
            the trainer calls ``sampler.set_epoch(epoch)`` before each epoch (also after a resume)
            so every epoch is shuffled anew and alike on all ranks; sums the metrics and counts
            of all ranks (``History`` holds global means, the same on every rank; ``evaluate``
            becomes collective: call it on every rank); prints on rank 0 only; and writes
            checkpoints on rank 0 only (with every rank's RNG states), then waits at a barrier.
            Every rank loads the checkpoint on resume.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | Mapping[str, torch.optim.Optimizer] | None = None,
        loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
        *,
        step_fn: StepFn | None = None,
        eval_fn: StepFn | None = None,
        scheduler: Any = None,
        device: str | torch.device = "cpu",
        metrics: Mapping[str, MetricFn] | None = None,
        callbacks: Iterable[Callback] = (),
        progress: bool | str | None = None,
        distributed: DistEnv | None = None,
    ) -> None:
        if step_fn is None and (optimizer is None or loss_fn is None):
            raise ValueError("Trainer needs an optimizer and a loss_fn, or a custom step_fn")
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.step_fn = step_fn or supervised_step
        self.eval_fn = eval_fn or supervised_eval
        self.scheduler = scheduler
        self.metrics = dict({"acc": accuracy} if metrics is None else metrics)
        self.callbacks = list(callbacks)
        self.progress = _progress_mode(progress)
        self.distributed = distributed
        if distributed is not None and not distributed.is_main:
            self.progress = "off"  # one rank speaks for all
        self.history = History()
        self.epoch = 0  # epochs completed so far

    # -- small utilities ---------------------------------------------------------------------
    def to_device(self, obj):
        """Move a tensor, or tensors nested in tuples / lists / dicts, to the trainer's device."""
        if isinstance(obj, Tensor):
            return obj.to(self.device, non_blocking=True)
        if isinstance(obj, (tuple, list)):
            return type(obj)(self.to_device(o) for o in obj)
        if isinstance(obj, dict):
            return {k: self.to_device(v) for k, v in obj.items()}
        return obj

    def _run(self, loader, fn: StepFn, desc: str) -> dict[str, float]:
        sums: dict[str, Tensor | float] = {}
        count = 0
        bar = None
        if self.progress == "bar":
            from tqdm.auto import tqdm

            bar = tqdm(total=len(loader), desc=desc, leave=desc.startswith("epoch"), dynamic_ncols=True)
        for batch in loader:
            out = fn(self, batch)
            n = _batch_size(batch)
            count += n
            for k, v in out.items():  # running sums stay tensors: no sync per batch
                v = v.detach() if isinstance(v, Tensor) else v
                sums[k] = sums.get(k, 0.0) + v * n
            if bar is not None:
                bar.update(1)
        if self.distributed is not None:
            sums, count = _global_sums(sums, count, self.device)
        means = {k: float(v) / max(count, 1) for k, v in sums.items()}
        if bar is not None:
            bar.set_postfix({k: f"{v:.4f}" for k, v in means.items()})
            bar.close()
        return means

    # -- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, loader) -> dict[str, float]:
        """Mean loss and metrics over ``loader``, in eval mode and without gradients."""
        with eval_mode(self.model):
            return self._run(loader, self.eval_fn, "eval")

    @torch.no_grad()
    def predict(self, loader) -> tuple[Tensor, Tensor]:
        """Logits and targets for every ``(x, y)`` batch of ``loader``, on the CPU."""
        logits, targets = [], []
        with eval_mode(self.model):
            for x, y in loader:
                logits.append(self.model(self.to_device(x)).cpu())
                targets.append(torch.as_tensor(y))
        return torch.cat(logits), torch.cat(targets)

    # -- training ----------------------------------------------------------------------------
    def fit(
        self,
        train_loader,
        val_loader=None,
        epochs: int = 1,
        *,
        checkpoint: str | os.PathLike | None = None,
        resume: bool = False,
    ) -> History:
        """Train until ``epochs`` epochs are complete in total, and return the ``History``.

        With ``checkpoint`` a checkpoint is written there (atomically) after every epoch; with
        ``resume=True`` and an existing checkpoint, training continues from it, so a run stopped
        after k epochs and resumed ends exactly where an uninterrupted run would.
        """
        if resume and checkpoint is not None and Path(checkpoint).exists():
            self.load_checkpoint(checkpoint, train_loader=train_loader)
        while self.epoch < epochs:
            start = time.perf_counter()
            if self.distributed is not None:
                _set_epoch(train_loader, self.epoch)
            self.model.train()
            record: dict[str, float] = {"epoch": self.epoch + 1}
            train = self._run(train_loader, self.step_fn, f"epoch {self.epoch + 1}/{epochs}")
            record.update({f"train_{k}": v for k, v in train.items()})
            if val_loader is not None:
                record.update({f"val_{k}": v for k, v in self.evaluate(val_loader).items()})
            self._step_scheduler(record)
            record["seconds"] = time.perf_counter() - start
            self.epoch += 1
            self.history.append(record)
            if self.progress == "line":
                shown = "  ".join(f"{k} {v:.4f}" for k, v in record.items() if k not in ("epoch", "seconds"))
                print(f"epoch {self.epoch}/{epochs}  {shown}")
            if checkpoint is not None:
                self.save_checkpoint(checkpoint, train_loader=train_loader)
            if any(cb(self, record) for cb in self.callbacks):
                break
        return self.history

    def _step_scheduler(self, record: dict[str, float]) -> None:
        if self.scheduler is None:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(record.get("val_loss", record.get("train_loss")))
        else:
            self.scheduler.step()

    # -- checkpoints -------------------------------------------------------------------------
    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        if self.optimizer is None:
            return {}
        if isinstance(self.optimizer, Mapping):
            return dict(self.optimizer)
        return {"optimizer": self.optimizer}

    def state_dict(self, train_loader=None) -> dict:
        """Everything needed to resume, as a plain dict of tensors and Python values."""
        np_state = np.random.get_state(legacy=False)
        generator = getattr(train_loader, "generator", None)
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "model": _unwrap(self.model).state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self._optimizers().items()},
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "history": self.history.to_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                          "pos": int(np_state["state"]["pos"]),
                          "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
                "python": random.getstate(),
                "loader": None if generator is None else generator.get_state(),
            },
        }

    def save_checkpoint(self, path: str | os.PathLike, train_loader=None) -> Path:
        """Write the checkpoint atomically: a crash mid-write never leaves a truncated file."""
        if self.distributed is not None:
            return self._save_distributed(path, train_loader)
        return save_atomic(self.state_dict(train_loader), path)

    def _save_distributed(self, path: str | os.PathLike, train_loader=None) -> Path:
        """Rank 0 writes (with every rank's RNG states, gathered); all ranks wait until it is on disk."""
        import torch.distributed as dist

        state = self.state_dict(train_loader)
        rank_rng: list = [None] * dist.get_world_size()
        dist.all_gather_object(rank_rng, state["rng"])
        state["rank_rng"] = rank_rng
        if self.distributed.is_main:
            save_atomic(state, path)
        dist.barrier()  # nobody reads (or resumes from) a checkpoint that is not written yet
        return Path(path)

    def load_checkpoint(self, path: str | os.PathLike, train_loader=None) -> None:
        """Restore model, optimizers, scheduler, history, epoch and RNG states from ``path``."""
        ckpt = load_checkpoint_file(path, map_location=self.device)
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a Trainer checkpoint (format {ckpt.get('format')!r}, expected {CHECKPOINT_FORMAT!r})")
        try:
            _unwrap(self.model).load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            raise ValueError(f"the checkpoint {path} was saved from a different model architecture:\n{exc}") from None
        optimizers = self._optimizers()
        if set(optimizers) != set(ckpt["optimizers"]):
            raise ValueError(f"{path} holds optimizers {sorted(ckpt['optimizers'])}, this trainer has {sorted(optimizers)}")
        for name, opt in optimizers.items():
            opt.load_state_dict(ckpt["optimizers"][name])
        if self.scheduler is not None and ckpt["scheduler"] is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        self.history = History.from_dict(ckpt["history"])
        self.epoch = int(ckpt["epoch"])
        rng = ckpt["rng"]
        if self.distributed is not None and len(ckpt.get("rank_rng", ())) == self.distributed.world_size:
            rng = ckpt["rank_rng"][self.distributed.rank]  # each rank continues its own streams
        torch.set_rng_state(rng["torch"].cpu())
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
        n = rng["numpy"]
        np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        version, state, gauss = rng["python"]
        random.setstate((version, tuple(state), gauss))
        generator = getattr(train_loader, "generator", None)
        if generator is not None and rng["loader"] is not None:
            generator.set_state(rng["loader"])


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside ``DistributedDataParallel``: checkpoints hold plain parameter names."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _set_epoch(loader, epoch: int) -> None:
    """``DistributedSampler.set_epoch``: without it every epoch repeats the first one's order."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


def _global_sums(sums: Mapping[str, Tensor | float], count: int, device: torch.device) -> tuple[dict, int]:
    """Every rank's metric sums and example count, added up over all ranks (one all-reduce).

    Means of means would weigh a rank's short last batch like a full one; sums and counts do not.
    """
    import torch.distributed as dist

    keys = list(sums)
    packed = torch.tensor([float(sums[k]) for k in keys] + [float(count)], dtype=torch.float64, device=device)
    dist.all_reduce(packed)  # SUM
    total = packed.tolist()
    return dict(zip(keys, total[:-1])), int(total[-1])


def write_atomic(data: bytes | Callable[[BinaryIO], None], path: str | os.PathLike) -> Path:
    """Write ``data`` (bytes, or a function writing to a binary file) to ``path`` atomically.

    The bytes go to a temporary file in the same folder, are flushed to disk, and the file is then
    renamed over ``path``: a reader sees the old file or the new one, never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, (bytes, bytearray)):
                f.write(data)
            else:
                data(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through :func:`write_atomic`: a crash mid-write never leaves a truncated file."""
    return write_atomic(lambda f: torch.save(obj, f), path)


def load_checkpoint_file(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """``torch.load(..., weights_only=True)`` with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train first, or check the path")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} could not be loaded as a weights-only checkpoint ({type(exc).__name__}: {exc}). "
                         "Is it a file written by torch.save from this book's code?") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    return obj
