"""Learning-rate schedules: trace them, step them per batch, and pick a range with a range test.

* :func:`lr_trace` -- the learning rate each optimizer step of a ``torch.optim.lr_scheduler``
  schedule uses, without training anything (for plotting schedules).
* :func:`scheduled_step` -- a ``Trainer`` step that advances a schedule after every batch (the
  ``Trainer``'s own ``scheduler=`` steps once per epoch).
* :func:`lr_range_test` -- Smith's learning-rate range test (Smith, 2017, "Cyclical Learning
  Rates for Training Neural Networks"): train for a few hundred steps while the learning rate grows
  geometrically, record the loss, stop when it diverges, and put the model back as it was. The
  result suggests a largest usable learning rate, e.g. for a one-cycle schedule (Smith & Topin,
  2019).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn

from .train import StepFn, supervised_step

__all__ = ["lr_trace", "scheduled_step", "RangeTestResult", "lr_range_test"]

SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


def lr_trace(make_scheduler: SchedulerFactory, steps: int, lr: float = 1.0) -> list[float]:
    """The learning rate of each of ``steps`` optimizer steps under a schedule.

    ``make_scheduler(optimizer)`` builds the schedule on a throw-away SGD optimizer whose base
    learning rate is ``lr``; entry ``t`` is the rate the optimizer's step ``t`` uses (read before
    ``scheduler.step()``), so the trace is exactly what training would see.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0; got {steps}")
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = make_scheduler(optimizer)
    trace = []
    for _ in range(steps):
        trace.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # no gradient: a no-op, but keeps the scheduler's order check quiet
        scheduler.step()
    return trace


def scheduled_step(scheduler: Any, step_fn: StepFn = supervised_step) -> StepFn:
    """``step_fn`` followed by ``scheduler.step()``: a schedule advanced once per batch."""

    def step(trainer, batch):
        out = step_fn(trainer, batch)
        scheduler.step()
        return out

    return step


@dataclass
class RangeTestResult:
    """Learning rates tried, the loss of each step and its exponentially smoothed version."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]

    def steepest(self) -> float:
        """The learning rate where the smoothed loss fell fastest (per factor of learning rate),
        searched before the smoothed loss's minimum."""
        stop = min(range(len(self.smoothed)), key=self.smoothed.__getitem__)
        if stop < 2:
            raise ValueError("the loss never decreased: widen the range (lower lr_min) "
                             "or check the model")
        logs = [math.log(lr) for lr in self.lrs]
        slopes = [(self.smoothed[i + 1] - self.smoothed[i]) / (logs[i + 1] - logs[i])
                  for i in range(stop)]
        return self.lrs[min(range(len(slopes)), key=slopes.__getitem__)]

    def minimum(self) -> float:
        """The learning rate at the smoothed loss's minimum: beyond it training gets worse."""
        return self.lrs[min(range(len(self.smoothed)), key=self.smoothed.__getitem__)]

    def plot(self, ax=None):
        """Loss (faint) and smoothed loss against the learning rate (log axis); returns the axes."""
        import matplotlib.pyplot as plt

        ax = ax or plt.gca()
        ax.plot(self.lrs, self.losses, color="0.75", lw=0.8, label="loss per step")
        ax.plot(self.lrs, self.smoothed, label="smoothed")
        ax.set(xscale="log", xlabel="learning rate", ylabel="training loss")
        return ax


def lr_range_test(
    model: nn.Module,
    batches: Iterable,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    make_optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
    *,
    lr_min: float = 1e-4,
    lr_max: float = 10.0,
    steps: int = 100,
    smoothing: float = 0.9,
    diverge: float = 4.0,
) -> RangeTestResult:
    """Train ``model`` for up to ``steps`` batches with the learning rate growing geometrically
    from ``lr_min`` to ``lr_max``; stop early once the smoothed loss exceeds ``diverge`` times its
    best value (or is not finite). The model's parameters and buffers are restored afterwards.

    ``batches`` yields ``(x, y)`` pairs and is cycled if it has fewer than ``steps``.
    ``smoothing`` is the weight of the past in the bias-corrected exponential moving average.
    """
    if not 0 < lr_min < lr_max:
        raise ValueError(f"need 0 < lr_min < lr_max; got lr_min={lr_min}, lr_max={lr_max}")
    if steps < 2 or not 0 <= smoothing < 1 or diverge <= 1:
        raise ValueError(f"need steps >= 2, 0 <= smoothing < 1, diverge > 1; "
                         f"got {steps}, {smoothing}, {diverge}")
    saved = copy.deepcopy(model.state_dict())
    optimizer = make_optimizer(model.parameters())
    factor = (lr_max / lr_min) ** (1 / (steps - 1))
    result = RangeTestResult([], [], [])
    average, best = 0.0, math.inf
    was_training = model.training
    model.train()
    try:
        source = iter(_cycle(batches))
        for t in range(steps):
            lr = lr_min * factor**t
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = next(source)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = loss.item()
            average = smoothing * average + (1 - smoothing) * value
            smooth = average / (1 - smoothing ** (t + 1))
            result.lrs.append(lr)
            result.losses.append(value)
            result.smoothed.append(smooth)
            best = min(best, smooth)
            if not math.isfinite(smooth) or smooth > diverge * best:
                break
    finally:
        model.load_state_dict(saved)
        model.train(was_training)
    return result


def _cycle(batches: Iterable):
    """Yield from ``batches`` again and again (a DataLoader reshuffles on every pass)."""
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError("lr_range_test got no batches")
