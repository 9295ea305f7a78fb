"""lm_loss: the next-token cross-entropy of a language model, logits[:, t] scored against tokens[:, t + 1].

Radford et al., "Improving Language Understanding by Generative Pre-Training" (2018), §3.1: the standard language
modelling objective, the log-likelihood of each token given the ones before it.

Expected values: ``reference.lm_loss`` in float64, cross-checked against PyTorch's ``F.cross_entropy``; a wrong
value that equals a known-wrong loss (``autograder/known_bugs/a5_transformer_lm.py``) is named.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from autograder import reference
from autograder.checks import (
    expect_close,
    expect_no_backward_error,
    expect_tensor,
    expect_unchanged,
    fail,
    guess,
    tolerance,
)
from autograder.hidden import hidden
from autograder.known_bugs.a5_transformer_lm import loss_suspects
from autograder.suites.a5_transformer_lm.inputs import randint


def pytorch_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The same loss by F.cross_entropy in float64: predictions (B * (T-1), V) against targets (B * (T-1),)."""
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, V).double(), tokens[:, 1:].reshape(-1))


@hidden("lm_loss", points=1, group="shapes")
def test_loss_is_a_scalar(ctx):
    """returns a 0-dimensional tensor of the logits' dtype"""
    for (B, T, V), dtype in [((2, 5, 7), torch.float32), ((1, 2, 3), torch.float64), ((4, 9, 11), torch.float32)]:
        logits, tokens = ctx.randn(B, T, V, dtype=dtype), randint(ctx, V, B, T)
        expect_tensor(ctx.call("lm_loss", logits, tokens), f"lm_loss of logits of shape ({B}, {T}, {V})", shape=(),
                      dtype=dtype, hint="Return one number: the mean over all B * (T - 1) predictions "
                                        "(reduction='mean'), as a tensor")


@hidden("lm_loss", points=2, group="numerics")
def test_loss_matches_reference(ctx):
    """is the mean cross-entropy of tokens[:, 1:] given logits[:, :-1]"""
    for B, T, V in [(3, 8, 10), (2, 12, 5)]:
        logits, tokens = ctx.randn(B, T, V, scale=2.0), randint(ctx, V, B, T)
        what = f"lm_loss on ({B}, {T}, {V}) logits"
        got = ctx.call("lm_loss", logits, tokens)
        expect_close(got, reference.lm_loss(logits, tokens), what, **tolerance(torch.float64),
                     suspects=loss_suspects(logits, tokens),
                     hint="F.cross_entropy(logits[:, :-1].reshape(-1, V), tokens[:, 1:].reshape(-1))")
        expect_close(got, pytorch_loss(logits, tokens), f"{what}, against F.cross_entropy", **tolerance(torch.float64))
    logits, tokens = ctx.randn(2, 6, 9, dtype=torch.float32, scale=2.0), randint(ctx, 9, 2, 6)
    expect_close(ctx.call("lm_loss", logits, tokens), reference.lm_loss(logits, tokens), "lm_loss on float32 logits",
                 **tolerance(torch.float32), suspects=loss_suspects(logits, tokens))


@hidden("lm_loss", points=1, group="numerics")
def test_loss_is_stable_for_large_logits(ctx):
    """stays finite and exact for logits of size 1000 (float32)"""
    logits, tokens = ctx.randn(2, 7, 6, dtype=torch.float32, scale=300.0), randint(ctx, 6, 2, 7)
    expect_close(ctx.call("lm_loss", logits, tokens), reference.lm_loss(logits, tokens),
                 "lm_loss on logits of size ~1000", **tolerance(torch.float32),
                 hint=guess("log(softmax(x)) underflows to log(0) = -inf: use F.cross_entropy (or F.log_softmax), "
                            "which subtracts the maximum first"))


@hidden("lm_loss", points=1, group="gradients")
def test_loss_gradient_matches(ctx):
    """its gradient w.r.t. the logits matches, and is exactly 0 at the last position"""
    logits, tokens = ctx.randn(3, 6, 8), randint(ctx, 8, 3, 6)
    one = torch.tensor(1.0, dtype=torch.float64)
    result = ctx.call_full("lm_loss", logits, tokens, grad={"wrt": [0], "grad_outputs": [one]})
    expect_tensor(result.value, "lm_loss", shape=(), dtype=torch.float64)
    expect_no_backward_error(result, "lm_loss")
    leaf = logits.clone().requires_grad_(True)
    reference.lm_loss(leaf, tokens).backward()
    got = result.input_grads[0]
    expect_close(got, leaf.grad, "d lm_loss / d logits", **tolerance(torch.float64),
                 hint=guess("Is part of the computation detached, or done outside torch (numpy, .item())?"))
    last = expect_tensor(got, "d lm_loss / d logits")[:, -1]
    if last.abs().max() != 0:
        fail("the logits at the last position get a gradient",
             "The last position has no next token to predict: drop it with logits[:, :-1]")


@hidden("lm_loss", points=1, group="hygiene")
def test_loss_leaves_inputs_unchanged(ctx):
    """leaves logits and tokens unmodified"""
    logits, tokens = ctx.randn(2, 5, 7), randint(ctx, 7, 2, 5)
    result = ctx.call_full("lm_loss", logits, tokens)
    expect_tensor(result.value, "lm_loss", shape=())
    expect_unchanged(logits, result.args_after[0], "the logits")
    expect_unchanged(tokens, result.args_after[1], "the tokens")
