"""lr_schedule: a linear warm-up, then a half cosine down to min_lr, as a pure function of the step.

Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts" (2017); Goyal et al., "Accurate, Large
Minibatch SGD" (2017). Every rate is compared with ``reference.lr_schedule``, and one schedule with PyTorch's own
``LinearLR`` and ``CosineAnnealingLR`` chained by ``SequentialLR``; a wrong schedule that equals a known bug
(``autograder/known_bugs/a6_training_stability.py``) is named.
"""

from __future__ import annotations

import math
import warnings

import torch

from autograder import reference
from autograder.checks import expect_close, fail
from autograder.hidden import hidden
from autograder.known_bugs.a6_training_stability import schedule_suspects
from autograder.wire import WireTensor

# Python floats through a few operations: roundoff near 1e-16 relative. 1e-9 relative leaves room for any order of
# the same operations (and for PyTorch's chained, recursive cosine, which drifts by ~1e-15 per step); every bug we
# know of moves some rate by more than 1e-3 of max_lr.
RATE_TOL = {"atol": 1e-15, "rtol": 1e-9}

# (max_lr, warmup_steps, total_steps, min_lr): with and without warm-up and min_lr, a warm-up of one step, and a
# warm-up that fills the whole schedule.
CONFIGS = [(3e-4, 10, 40, 3e-5), (1.0, 1, 7, 0.0), (6e-3, 0, 24, 6e-4), (2.5, 7, 7, 0.25), (1e-3, 3, 20, 0.0)]


def call(max_lr, warmup_steps, total_steps, min_lr):
    return (f"lr_schedule(step, max_lr={max_lr:g}, warmup_steps={warmup_steps}, total_steps={total_steps}, "
            f"min_lr={min_lr:g})")


def rate(ctx, step, max_lr, warmup_steps, total_steps, min_lr) -> float:
    """The student's rate of one step, judged to be a real number first."""
    got = ctx.call("lr_schedule", step, max_lr, warmup_steps, total_steps, min_lr)
    if isinstance(got, WireTensor):
        fail(f"lr_schedule(step={step}, ...) returned a tensor, expected a Python float",
             "Compute with Python numbers and math.cos / math.pi, not torch, and return a float")
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        fail(f"lr_schedule(step={step}, ...) returned {type(got).__name__}, expected a Python float")
    return float(got)


def rates(ctx, steps, *config) -> torch.Tensor:
    return torch.tensor([rate(ctx, s, *config) for s in steps], dtype=torch.float64)


def expect_rates(got: torch.Tensor, want: torch.Tensor, steps, config, what: str = "", hint=None) -> None:
    steps = list(steps)
    expect_close(got, want, f"{what}the rates of {call(*config)} at steps {steps[0]}..{steps[-1]}", **RATE_TOL,
                 suspects=schedule_suspects(*config, steps), hint=hint)


@hidden("lr_schedule", points=1, group="shapes")
def test_schedule_returns_a_float(ctx):
    """returns a Python float for every step, warm-up, cosine and after the end"""
    for step in (0, 5, 10, 60, 100, 250):
        got = ctx.call("lr_schedule", step, 3e-4, 10, 100, 3e-5)
        if not isinstance(got, float):
            kind = "a tensor" if isinstance(got, WireTensor) else type(got).__name__
            fail(f"lr_schedule(step={step}, max_lr=3e-4, warmup_steps=10, total_steps=100, min_lr=3e-5) returned "
                 f"{kind}, expected a Python float",
                 "Compute with Python numbers and math.cos / math.pi, and return float(min_lr) at the end")


@hidden("lr_schedule", points=3, group="numerics")
def test_schedule_matches_reference(ctx):
    """every step of five schedules (no warm-up, one step of warm-up, warm-up to the end) matches the reference"""
    for config in CONFIGS:
        steps = range(config[2] + 6)
        expect_rates(rates(ctx, steps, *config),
                     torch.tensor([reference.lr_schedule(s, *config) for s in steps], dtype=torch.float64),
                     steps, config,
                     hint="Warm-up max_lr * (step + 1) / warmup_steps; then min_lr + 0.5 * (max_lr - min_lr) * "
                          "(1 + cos(pi * (step - warmup_steps) / (total_steps - warmup_steps))); min_lr from "
                          "total_steps on")


def pytorch_rates(max_lr: float, warmup_steps: int, total_steps: int, min_lr: float) -> torch.Tensor:
    """The same schedule from torch.optim.lr_scheduler: LinearLR from max_lr / W to max_lr over steps 0..W-1, then
    CosineAnnealingLR over the T_max = N - W steps after it, chained by SequentialLR; steps 0..N."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=max_lr)
    warm = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup_steps, end_factor=1.0,
                                             total_iters=warmup_steps - 1)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps - warmup_steps, eta_min=min_lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scheduler.step() before optimizer.step(): there is no training here
        schedule = torch.optim.lr_scheduler.SequentialLR(optimizer, [warm, cosine], milestones=[warmup_steps])
        found = []
        for _ in range(total_steps + 1):
            found.append(optimizer.param_groups[0]["lr"])
            schedule.step()
    return torch.tensor(found, dtype=torch.float64)


@hidden("lr_schedule", points=1, group="numerics")
def test_schedule_matches_pytorch(ctx):
    """agrees with PyTorch's LinearLR then CosineAnnealingLR (SequentialLR) at every step"""
    config = (6e-4, 8, 30, 6e-5)
    steps = range(config[2] + 1)
    expect_rates(rates(ctx, steps, *config), pytorch_rates(*config), steps, config, "PyTorch's scheduler and ")


@hidden("lr_schedule", points=1, group="properties")
def test_schedule_warmup_rises_linearly_to_max_lr(ctx):
    """the warm-up starts at max_lr / warmup_steps, rises by equal steps and reaches max_lr at step warmup_steps - 1"""
    for max_lr, W, N in ((1.0, 4, 20), (3e-4, 12, 50), (2.0, 1, 5)):
        config = (max_lr, W, N, 0.0)
        got = rates(ctx, range(W + 1), *config)
        first, last = got[0].item(), got[W - 1].item()
        if not math.isclose(first, max_lr / W, rel_tol=1e-12):
            fail(f"{call(*config)} at step 0 is {first:.6g}, expected max_lr / warmup_steps = {max_lr / W:.6g}",
                 "Step 0 trains already: max_lr * (step + 1) / warmup_steps"
                 + (" (not max_lr * step / warmup_steps, which gives 0)" if first == 0 else ""))
        if not math.isclose(last, max_lr, rel_tol=1e-12):
            fail(f"{call(*config)} at the last warm-up step ({W - 1}) is {last:.6g}, expected max_lr = {max_lr:g}",
                 "The last warm-up step, warmup_steps - 1, reaches max_lr: max_lr * (step + 1) / warmup_steps")
        increments = got[1:W] - got[:W - 1]
        if W > 2 and (increments - max_lr / W).abs().max() > 1e-12 * max_lr:
            fail(f"{call(*config)} rises by unequal amounts during the warm-up: {increments[:4].tolist()}",
                 "The warm-up is linear: max_lr * (step + 1) / warmup_steps")
        if not math.isclose(got[W].item(), max_lr, rel_tol=1e-12):
            fail(f"{call(*config)} at step warmup_steps = {W} is {got[W].item():.6g}, expected max_lr = {max_lr:g}",
                 "The cosine starts at progress 0, that is at max_lr, on step warmup_steps")


@hidden("lr_schedule", points=1, group="properties")
def test_schedule_ends_exactly_at_min_lr(ctx):
    """the rate falls monotonically after the warm-up, is exactly min_lr at total_steps and stays there"""
    for config in ((1.0, 5, 24, 0.1), (3e-4, 0, 20, 3e-5), (1e-3, 6, 30, 0.0)):
        max_lr, W, N, min_lr = config
        decay = rates(ctx, range(W, N + 1), *config)
        if not decay[0] > decay[-1]:  # max_lr > min_lr in every config: a constant passes nothing below
            fail(f"{call(*config)} is {decay[0].item():.6g} at step warmup_steps = {W} and {decay[-1].item():.6g} at "
                 f"total_steps = {N}: it does not fall after the warm-up",
                 "After the warm-up the cosine falls from max_lr to min_lr")
        if (decay[1:] > decay[:-1]).any():
            step = W + 1 + int((decay[1:] > decay[:-1]).nonzero()[0])
            fail(f"{call(*config)} rises at step {step} ({decay[step - W - 1].item():.6g} -> "
                 f"{decay[step - W].item():.6g}), after the warm-up", "After the warm-up the cosine only falls")
        for step in (N, N + 1, N + 7, 10 * N):
            got = rate(ctx, step, *config)
            if got != min_lr:
                fail(f"{call(*config)} at step {step} is {got!r}, expected exactly min_lr = {min_lr!r}",
                     "At total_steps the cosine reaches min_lr (progress 1, cos(pi) = -1); from then on return "
                     "min_lr: the cosine must not rise again")


@hidden("lr_schedule", points=1, group="hygiene")
def test_schedule_is_pure(ctx):
    """the rate of a step does not depend on which steps were asked for before (no hidden state)"""
    config = (1e-3, 6, 24, 1e-4)
    in_order = rates(ctx, range(30), *config)
    order = ctx.permutation(30).tolist()
    shuffled = torch.empty(30, dtype=torch.float64)
    for step in order:
        shuffled[step] = rate(ctx, step, *config)
    if torch.all(in_order == in_order[0]):
        fail(f"{call(*config)} is {in_order[0].item():.6g} at every step 0..29: it does not depend on the step",
             "lr_schedule is a function of step: a warm-up, then a cosine")
    for step in torch.nonzero(shuffled != in_order).flatten().tolist()[:1]:
        fail(f"{call(*config)} at step {step} gave {in_order[step].item():.6g} when the steps were asked for in "
             f"order and {shuffled[step].item():.6g} when they were asked for shuffled",
             "lr_schedule is a pure function of its arguments: keep no counter or state between calls")
