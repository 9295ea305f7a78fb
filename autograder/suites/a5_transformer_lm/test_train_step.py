"""train_step: one optimisation step of a language model (zero the gradients, forward, loss, backward, step).

Rumelhart, Hinton & Williams, "Learning representations by back-propagating errors" (1986); the steps are SGD
and AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019), PyTorch's own optimizers.

The tests train the notebook's given ``BigramLM`` (a lookup table of next-token logits), so a bug in
``TransformerLM`` costs no points here. ``train_step`` is judged in the grader: its update and returned loss are
replayed from the parameters read before and after it, on ``reference.lm_loss``. Only when that fails and the
student's ``lm_loss`` is wrong on random logits in a worker of its own (never the worker that ran ``train_step``,
whose code could change ``lm_loss`` after the fact) is the step replayed on that ``lm_loss``, so a bug in the loss
costs points in ``lm_loss`` only.
"""

from __future__ import annotations

import functools
import math

import torch

from autograder import reference
from autograder.checks import expect_close, expect_unchanged, fail, guess, tolerance
from autograder.hidden import hidden
from autograder.known_bugs.a5_transformer_lm import sgd_step_suspects
from autograder.session import CheckFailed, StudentRaised, WorkerLost
from autograder.suites.a5_transformer_lm.inputs import build_bigram, randint, table_of, wire
from autograder.wire import Foreign, WireTensor

LR = 0.5
OVERFIT_STEPS = 40
OVERFIT_LOSS = 0.25


# --- who judges: the reference loss, or the student's own (wrong) lm_loss ---------------------------

def reference_loss_and_grad(table: torch.Tensor, tokens: torch.Tensor) -> tuple[float, torch.Tensor]:
    """The reference loss of a BigramLM with this table on ``tokens``, and its gradient w.r.t. the table (float64)."""
    leaf = table.detach().to(torch.float64).clone().requires_grad_(True)
    loss = reference.lm_loss(leaf[tokens], tokens)  # leaf[tokens] is BigramLM's forward: (B, T) -> (B, T, V)
    loss.backward()
    return loss.item(), leaf.grad


class StudentsLoss:
    """The student's ``lm_loss`` as the judge of ``train_step``, run by ``judge_ctx`` (a worker of its own).

    Only an ``lm_loss`` that differs from the reference on the random ``probe`` (a bug its own tests cost points
    for) and has a usable gradient becomes the judge; otherwise ``train_step`` is judged by the reference.
    """

    name = "the loss your lm_loss computes"

    def __init__(self, judge_ctx, probe: tuple[torch.Tensor, torch.Tensor]):
        self.ctx = judge_ctx
        self.probe = probe

    def differs_from_the_reference(self) -> bool:
        logits, tokens = self.probe
        try:
            value, _ = self._call(logits, tokens)
        except CheckFailed:  # not implemented, broken or unusable: the reference judges
            return False
        return abs(value - reference.lm_loss(logits, tokens).item()) > 1e-9

    def loss_and_grad(self, table: torch.Tensor, tokens: torch.Tensor) -> tuple[float, torch.Tensor]:
        V = table.shape[0]
        value, d_logits = self._call(table.to(torch.float64)[tokens], tokens)  # (B, T) -> (B, T, V) logits
        return value, torch.zeros_like(table).index_add_(0, tokens.reshape(-1), d_logits.reshape(-1, V))

    def _call(self, logits, tokens) -> tuple[float, torch.Tensor]:
        one = torch.tensor(1.0, dtype=torch.float64)
        result = self.ctx.call_full("lm_loss", logits, tokens, grad={"wrt": [0], "grad_outputs": [one]})
        value, grads = result.value, result.input_grads
        grad = grads[0] if grads else None
        if not (isinstance(value, WireTensor) and value.tensor is not None and value.tensor.numel() == 1):
            raise CheckFailed("lm_loss gave no single number")
        if not (isinstance(grad, WireTensor) and grad.tensor is not None and grad.tensor.shape == logits.shape
                and torch.isfinite(grad.tensor).all() and grad.tensor.abs().max() > 0):
            raise CheckFailed("lm_loss gave no usable gradient")
        return value.tensor.item(), grad.tensor.to(torch.float64)


def judged(ctx, vocab_size: int, check) -> None:
    """Run ``check(loss_and_grad, name)`` with the reference loss; if that fails and the student's lm_loss is wrong
    (probed in a worker of its own), run it again with that lm_loss: a bug in lm_loss costs points in lm_loss only.
    Otherwise the reference's failure stands."""
    try:
        check(reference_loss_and_grad, "the loss")
        return
    except CheckFailed as failure:
        by_reference = failure
    probe = ctx.randn(2, 5, vocab_size), randint(ctx, vocab_size, 2, 5)
    with ctx.worker_of_its_own("lm_loss") as judge_ctx:
        students = StudentsLoss(judge_ctx, probe)
        if not students.differs_from_the_reference():
            raise by_reference
        try:
            check(students.loss_and_grad, students.name)
        except (StudentRaised, WorkerLost):  # the judge itself broke down: the reference's verdict stands
            raise by_reference from None


def expect_float(value, what: str) -> float:
    if isinstance(value, WireTensor):
        fail(f"{what} returned a tensor of shape {tuple(value.shape)}, expected a Python float",
             "Return loss.item(): a float, which holds neither the graph nor the batch in memory")
    if isinstance(value, bool) or not isinstance(value, (float, int)):
        name = value.type_name if isinstance(value, Foreign) else type(value).__name__
        kind = "None" if value is None else f"a {name}"
        fail(f"{what} returned {kind}, expected a Python float (loss.item())")
    if not math.isfinite(value):
        fail(f"{what} returned {value}, expected a finite loss")
    return float(value)


# --- the tests ----------------------------------------------------------------------------------------

@hidden("train_step", points=1, group="shapes")
def test_train_step_returns_a_float(ctx):
    """returns the loss as a Python float"""
    model, _ = build_bigram(ctx, 7)
    opt = ctx.builtin("optimizer", model, "SGD", lr=LR)
    expect_float(ctx.call("train_step", model, opt, randint(ctx, 7, 3, 6)), "train_step(model, optimizer, tokens)")


@hidden("train_step", points=2, group="numerics")
def test_train_step_does_one_step(ctx):
    """each call does one SGD step on the gradient of this batch's loss and returns the loss before it"""
    V = 9
    model, table = build_bigram(ctx, V)
    opt = ctx.builtin("optimizer", model, "SGD", lr=LR)
    batches = [randint(ctx, V, 4, 8), randint(ctx, V, 4, 8)]
    steps = []  # (returned loss, parameters after) of each call
    for step, tokens in enumerate(batches, start=1):
        returned = expect_float(ctx.call("train_step", model, opt, tokens), f"train_step call {step}")
        steps.append((returned, table_of(model)))
        if step == 1 and torch.equal(steps[0][1], table):
            fail("train_step did not change the parameters",
                 "Call optimizer.step() after loss.backward(): before it, there is no gradient to step on")
    judged(ctx, V, functools.partial(_expect_sgd_steps, table, batches, steps))


def _expect_sgd_steps(table, batches, steps, loss_and_grad, judge: str) -> None:
    """The SGD steps (and returned losses) ``steps`` recorded, replayed in the grader on the loss ``loss_and_grad``."""
    grads = []
    for step, (tokens, (returned, after)) in enumerate(zip(batches, steps), start=1):
        loss, grad = loss_and_grad(table, tokens)
        grads.append(grad)
        want = table - LR * grad
        expect_close(wire(after), want, f"the parameters after train_step call {step} (SGD, lr={LR})",
                     **tolerance(torch.float64, 10), suspects=sgd_step_suspects(table, LR, grads),
                     hint="One step: optimizer.zero_grad(); loss = lm_loss(model(tokens), tokens); loss.backward(); "
                          f"optimizer.step(). (Judged with {judge}.)")
        if abs(returned - loss) > 1e-8 * max(1.0, abs(loss)):
            after_loss = loss_and_grad(want, tokens)[0]
            hint = ("That is the loss after the update: return the loss computed before optimizer.step()"
                    if abs(returned - after_loss) <= 1e-8 * max(1.0, abs(after_loss)) else
                    "Return loss.item() of the loss you backpropagated")
            fail(f"train_step call {step} returned {returned:.6g}, expected {judge} before the update, {loss:.6g}",
                 hint)
        table = want


@hidden("train_step", points=2, group="properties", time_limit=30)
def test_train_step_overfits_a_batch(ctx):
    """40 AdamW steps on one batch drive its loss from ln(vocab_size) below 0.25"""
    V = 16
    model, table = build_bigram(ctx, V, dtype=torch.float32, table=torch.zeros(V, V))
    successor = ctx.permutation(V)  # each token has exactly one possible next token: a bigram can learn it all
    tokens = torch.empty(8, 16, dtype=torch.int64)
    tokens[:, 0] = randint(ctx, V, 8)
    for t in range(15):
        tokens[:, t + 1] = successor[tokens[:, t]]
    opt = ctx.builtin("optimizer", model, "AdamW", lr=0.1)
    returned = [expect_float(ctx.call("train_step", model, opt, tokens), "train_step") for _ in range(OVERFIT_STEPS)]
    trained = table_of(model).double()
    judged(ctx, V, functools.partial(_expect_overfit, table, trained, tokens, returned))


def _expect_overfit(table, trained, tokens, returned, loss_and_grad, judge: str) -> None:
    first = loss_and_grad(table, tokens)[0]
    if abs(returned[0] - first) > 1e-4:
        fail(f"the first train_step returned {returned[0]:.4g}, but {judge} of the untrained model is {first:.4g}",
             "Return the loss of the batch you trained on, as loss.item()")
    final = loss_and_grad(trained, tokens)[0]
    if not final < OVERFIT_LOSS:
        fail(f"after {OVERFIT_STEPS} train_step calls on one batch, {judge} is {final:.3g} (it started at "
             f"{first:.3g}); expected below {OVERFIT_LOSS}",
             guess("Is optimizer.step() called after loss.backward(), and the gradient zeroed before each backward?"))


@hidden("train_step", points=1, group="hygiene")
def test_train_step_leaves_tokens_and_dtype(ctx):
    """leaves the tokens unmodified and the model's dtype unchanged"""
    model, _ = build_bigram(ctx, 6)
    opt = ctx.builtin("optimizer", model, "SGD", lr=LR)
    tokens = randint(ctx, 6, 2, 5)
    result = ctx.call_full("train_step", model, opt, tokens)
    expect_float(result.value, "train_step")
    expect_unchanged(tokens, result.args_after[2], "the tokens")
    if table_of(model).dtype != torch.float64:
        fail(f"train_step turned a float64 model into {table_of(model).dtype}",
             "train_step must not convert the model (.float(), .to(...))")
