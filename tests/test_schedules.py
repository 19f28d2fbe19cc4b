"""companion.schedules: schedule traces, per-batch stepping and the learning-rate range test."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from companion.schedules import RangeTestResult, lr_range_test, lr_trace, scheduled_step
from companion.train import Trainer

sched = torch.optim.lr_scheduler


@settings(max_examples=30, deadline=None)
@given(steps=st.integers(1, 60), t_max=st.integers(1, 80), lr=st.floats(1e-4, 10.0))
def test_cosine_trace_is_the_closed_form(steps, t_max, lr):
    trace = lr_trace(lambda o: sched.CosineAnnealingLR(o, T_max=t_max), steps, lr=lr)
    assert len(trace) == steps
    for t, value in enumerate(trace[: t_max + 1]):
        assert value == pytest.approx(lr * 0.5 * (1 + math.cos(math.pi * t / t_max)), abs=1e-9 * lr)


def test_step_trace_and_errors():
    trace = lr_trace(lambda o: sched.StepLR(o, step_size=3, gamma=0.5), 7, lr=2.0)
    assert trace == pytest.approx([2, 2, 2, 1, 1, 1, 0.5])
    assert lr_trace(lambda o: sched.StepLR(o, 1), 0) == []
    with pytest.raises(ValueError, match="steps"):
        lr_trace(lambda o: sched.StepLR(o, 1), -1)


def test_scheduled_step_advances_once_per_batch():
    model = nn.Linear(2, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    schedule = sched.LambdaLR(optimizer, lambda t: 1.0 / (t + 1))
    trainer = Trainer(model, optimizer, nn.CrossEntropyLoss(), step_fn=scheduled_step(schedule), progress="off")
    batches = [(torch.randn(4, 2), torch.randint(0, 3, (4,))) for _ in range(5)]
    trainer.fit(batches, epochs=2)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1 / 11)  # 10 batches stepped


def regression_batches(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(4, 1, generator=g)
    batches = []
    for _ in range(n):
        x = torch.randn(32, 4, generator=g)
        batches.append((x, x @ w))
    return batches


def test_range_test_is_geometric_restores_the_model_and_stops_on_divergence():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = lr_range_test(model, regression_batches(), nn.MSELoss(),
                           lambda p: torch.optim.SGD(p, lr=1.0), lr_min=1e-3, lr_max=100.0, steps=60)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:])]
    assert ratios == pytest.approx([(1e5) ** (1 / 59)] * len(ratios))
    # plain SGD on this quadratic diverges above lr ~ 1: the test stops long before lr_max
    assert len(result.lrs) < 60 and result.lrs[-1] < 20
    assert result.steepest() < result.minimum() < 10  # the smoothed loss lags the divergence
    assert len(result.losses) == len(result.smoothed) == len(result.lrs)


def test_range_test_argument_errors():
    with pytest.raises(ValueError, match="lr_min"):
        lr_range_test(nn.Linear(1, 1), [], nn.MSELoss(), torch.optim.SGD, lr_min=1.0, lr_max=0.1)
    with pytest.raises(ValueError, match="no batches"):
        lr_range_test(nn.Linear(1, 1), [], nn.MSELoss(), lambda p: torch.optim.SGD(p, lr=1.0))


def test_steepest_needs_a_falling_loss():
    rising = RangeTestResult([1e-3, 1e-2, 1e-1], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="never decreased"):
        rising.steepest()
    falling = RangeTestResult([1e-3, 1e-2, 1e-1, 1.0], [3.0, 2.9, 1.0, 5.0], [3.0, 2.9, 1.0, 5.0])
    assert falling.steepest() == 1e-2 and falling.minimum() == 1e-1
