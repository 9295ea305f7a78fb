"""masked_softmax(scores, mask, dim=-1): the softmax over the entries where mask is True; a slice with none is zeros.

Vaswani et al., "Attention Is All You Need" (2017), §3.2.3: masking out "all values in the input of the softmax
which correspond to illegal connections" by setting them to -inf. The course's convention adds that a slice with
no visible entry gives zeros, with finite gradients. Expected: ``reference.masked_softmax``, cross-checked against
``torch.softmax`` of -inf-filled scores wherever a slice has a visible entry.
"""

from __future__ import annotations

import torch

from autograder import autodiff
from autograder.checks import expect_close, expect_equal, expect_tensor, expect_unchanged, fail, guess, tolerance
from autograder.hidden import hidden
from autograder.known_bugs.a2_masking import masked_softmax_suspects
from autograder.suites.a2_masking import inputs
from autograder.suites.a2_masking.expectations import (
    DETACHED,
    expect_exact_zero,
    expect_finite_gradient,
    expect_finite_then_backward,
    expect_zero_rows,
)
from autograder.suites.a2_masking.inputs import random_mask, rows_with_visible_key
from autograder.suites.common import FLOATS, dtype_name, expect_keeps_dtype_device_input


@hidden("masked_softmax", points=1, group="shapes")
def test_masked_softmax_keeps_shape(ctx):
    """returns the scores' shape for masks that broadcast: (T_q, T_k), (B, 1, 1, T_k), full"""
    scores = ctx.randn(2, 3, 4, 6)
    for mask_shape in [(4, 6), (2, 1, 1, 6), (2, 3, 4, 6), (1, 6)]:
        mask = random_mask(ctx, *mask_shape)
        expect_tensor(ctx.call("masked_softmax", scores, mask),
                      f"masked_softmax(scores (2, 3, 4, 6), mask {mask_shape})", shape=scores.shape,
                      hint="The result has the scores' shape; the mask only broadcasts against it")


@hidden("masked_softmax", points=2, group="numerics")
def test_masked_softmax_matches_reference(ctx):
    """matches torch.softmax of -inf-filled scores (float32 and float64, dim=-1 and another dim)"""
    for dtype in FLOATS:
        scores, mask = ctx.randn(2, 3, 5, 7, dtype=dtype, scale=3.0), random_mask(ctx, 2, 1, 5, 7)
        what = f"masked_softmax in {dtype_name(dtype)}"
        got = ctx.call("masked_softmax", scores, mask)
        if torch.isnan(expect_tensor(got, what, dtype=dtype)).any():
            fail(f"{what} contains NaN although every row has a visible key",
                 guess("Was the mask turned into a bias by multiplying it with -inf? 0 * -inf is NaN: block with "
                       "masked_fill(~mask, float('-inf')) or torch.where instead"))
        expect_close(got, inputs.masked_softmax(scores, mask), what, **tolerance(dtype),
                     suspects=masked_softmax_suspects(scores, mask))
    scores = ctx.randn(3, 6, 4, scale=3.0)
    mask = torch.rand(3, 6, 4, generator=ctx.generator) < 0.6
    mask[:, 0, :] = True  # every slice along dim=1 keeps a visible entry
    for dim in (1, -2):
        expect_close(ctx.call("masked_softmax", scores, mask, dim=dim), inputs.masked_softmax(scores, mask, dim),
                     f"masked_softmax(scores, mask, dim={dim})", **tolerance(torch.float64),
                     suspects=masked_softmax_suspects(scores, mask, dim),
                     hint=guess("Take the maximum and the sum along `dim`"))


@hidden("masked_softmax", points=2, group="properties")
def test_masked_softmax_blocked_weights_are_exactly_zero(ctx):
    """blocked weights are exactly 0 even under huge scores; True = may attend; rows sum to 1"""
    scores, mask = ctx.randn(4, 5, 8), random_mask(ctx, 4, 5, 8, p_visible=0.5)
    scores = torch.where(mask, scores, scores + 1000.0)  # huge blocked scores: the softmax must never see them
    got = expect_tensor(ctx.call("masked_softmax", scores, mask), "masked_softmax", shape=scores.shape)
    if torch.isnan(got).any():
        fail("masked_softmax gave NaN for rows that have visible keys, when the blocked scores are huge",
             "Block the scores (masked_fill with -inf) before taking the maximum and exponentiating; masking after "
             "a softmax over all keys lets the visible weights underflow to 0, and renormalising divides 0 by 0")
    expect_exact_zero(got, ~mask, "the weight of a blocked key",
                      guess("Set blocked scores to -inf before exponentiating (True = may attend: block where the mask "
                            "is False)"))
    sums = got.sum(-1)
    if (sums - 1).abs().max() > 1e-9:
        worst = sums.reshape(-1)[(sums - 1).abs().reshape(-1).argmax()].item()
        fail(f"rows with visible keys sum to {worst:.6g}, not 1",
             "Normalise over the visible keys only: the mask goes into the scores before the softmax")
    one_hot = torch.zeros(3, 6, dtype=torch.bool)
    one_hot[torch.arange(3), torch.tensor([0, 5, 2])] = True
    got = expect_tensor(ctx.call("masked_softmax", ctx.randn(3, 6, scale=5.0), one_hot),
                        "masked_softmax with one visible key per row", shape=(3, 6))
    if not torch.equal(got.to(torch.float64), one_hot.to(torch.float64)):
        fail("with exactly one True per row, the weights should be 1 at that key and 0 elsewhere",
             guess("True means 'may attend': is the mask inverted?"))


@hidden("masked_softmax", points=2, group="properties")
def test_masked_softmax_fully_masked_rows_are_zero(ctx):
    """a row with no visible key gives zeros: not NaN, not uniform; other rows are unaffected"""
    scores, mask = ctx.randn(2, 4, 6), random_mask(ctx, 2, 4, 6)
    mask[0, 2] = False
    mask[1] = False  # a whole sequence without visible keys
    got = ctx.call("masked_softmax", scores, mask)
    expect_tensor(got, "masked_softmax", shape=scores.shape)
    expect_zero_rows(got, ~rows_with_visible_key(mask, scores.shape), "masked_softmax", n_keys=6)
    expect_close(got, inputs.masked_softmax(scores, mask), "masked_softmax with some fully masked rows",
                 **tolerance(torch.float64),
                 hint="Rows with visible keys must not change when another row is fully masked")
    column = torch.ones(5, 3, dtype=torch.bool)
    column[:, 1] = False  # dim=0: the middle column has no visible entry
    got = ctx.call("masked_softmax", ctx.randn(5, 3), column, dim=0)
    expect_zero_rows(expect_tensor(got, "masked_softmax(..., dim=0)", shape=(5, 3)).T,
                     torch.tensor([[False], [True], [False]]),
                     "masked_softmax(..., dim=0) for a column with no visible entry", n_keys=5)


@hidden("masked_softmax", points=2, group="gradients")
def test_masked_softmax_gradients(ctx):
    """gradient matches the reference; exactly 0 at blocked scores; finite in fully masked rows"""
    scores, mask, g = ctx.randn(2, 5, 6), random_mask(ctx, 2, 5, 6), ctx.randn(2, 5, 6)
    mask[0, 1] = False
    mask[1, 4] = False
    result = ctx.call_full("masked_softmax", scores, mask, grad={"wrt": [0], "grad_outputs": [g]})
    expect_tensor(result.value, "masked_softmax", shape=scores.shape, dtype=torch.float64)
    expect_finite_then_backward(result, "masked_softmax", {"masked_softmax": result.value},
                                ~rows_with_visible_key(mask, scores.shape))
    grad = expect_finite_gradient(result.input_grads[0], "d loss / d scores")
    expect_exact_zero(grad, ~mask, "d loss / d scores at a blocked position",
                      guess("A blocked score must not influence anything: is the maximum taken over the blocked scores "
                            "too, or the mask applied after the exponential or the softmax?"))
    leaf = scores.clone().requires_grad_(True)
    autodiff.backward(inputs.masked_softmax(leaf, mask), g)
    expect_close(result.input_grads[0], leaf.grad, "d loss / d scores", **tolerance(torch.float64), hint=DETACHED)


@hidden("masked_softmax", points=1, group="hygiene")
def test_masked_softmax_keeps_dtype_device_and_inputs(ctx):
    """keeps dtype and device, leaves scores and mask unmodified, is deterministic"""
    for dtype in FLOATS:
        scores, mask = ctx.randn(3, 4, 5, dtype=dtype), random_mask(ctx, 3, 4, 5)
        first = ctx.call_full("masked_softmax", scores, mask)
        out = expect_keeps_dtype_device_input(ctx, first, scores, "masked_softmax", dtype,
                                              input_name="masked_softmax's input scores")
        expect_unchanged(mask, first.args_after[1], "masked_softmax's input mask")
        # NaN equals NaN here: the other tests judge NaN, this one only whether a second call gives the same bits
        expect_equal(ctx.call("masked_softmax", scores, mask), out, "a second call on the same inputs",
                     hint="The result should not depend on hidden state or randomness", equal_nan=True)
