"""Hidden tests of softmax(x, dim=-1): exp(x - max) / sum(exp(x - max)) along dim.

Bridle, "Probabilistic Interpretation of Feedforward Classification Network Outputs" (1990), which named the
softmax; Vaswani et al., "Attention Is All You Need" (2017), §3.2.1, where it turns scores into attention weights.
Subtracting the maximum first (shift invariance) keeps exp from overflowing: Goodfellow, Bengio & Courville,
"Deep Learning" (2016), §4.1.
"""

from __future__ import annotations

import torch

from autograder import reference
from autograder.checks import (
    expect_close,
    expect_finite,
    expect_no_backward_error,
    expect_tensor,
    fail,
    guess,
    tolerance,
)
from autograder.hidden import hidden
from autograder.known_bugs.a1_attention import DEFAULT_DIM, softmax_default_dim_suspects, softmax_suspects
from autograder.suites.a1_attention.inputs import expect_matches, grads_of
from autograder.suites.common import FLOATS, dtype_name, expect_deterministic, expect_keeps_dtype_device_input


@hidden("softmax", points=1, group="shapes")
def test_softmax_keeps_shape(ctx):
    """returns the input's shape, for any dim"""
    for shape, dim in [((4, 9), -1), ((2, 3, 5), 1), ((7,), 0), ((2, 3, 4, 5), -2)]:
        x = ctx.randn(*shape)
        expect_tensor(ctx.call("softmax", x, dim=dim), f"softmax(x of shape {tuple(shape)}, dim={dim})", shape=shape)


@hidden("softmax", points=2, group="numerics")
def test_softmax_matches_reference(ctx):
    """matches torch.softmax (float32 and float64, several dims)"""
    for dtype in FLOATS:
        for shape, dim in [((3, 4, 10), -1), ((3, 4, 10), 1), ((6, 5), 0)]:
            x = ctx.randn(*shape, dtype=dtype, scale=3.0)
            what = f"softmax(x, dim={dim}) in {dtype_name(dtype)}"
            got = ctx.call("softmax", x, dim=dim)
            expect_tensor(got, what, dtype=dtype)
            expect_matches(got, reference.softmax(x, dim), torch.softmax(x.double(), dim), what, dtype=dtype,
                           suspects=softmax_suspects(x, dim))
    x = ctx.randn(3, 4, 10, scale=3.0)
    expect_matches(ctx.call("softmax", x), reference.softmax(x), torch.softmax(x, dim=-1),
                   "softmax(x) without a dim argument", dtype=torch.float64,
                   suspects=softmax_default_dim_suspects(x), hint=DEFAULT_DIM)


@hidden("softmax", points=1, group="properties")
def test_softmax_rows_sum_to_one(ctx):
    """is non-negative and sums to 1 along dim"""
    x = ctx.randn(5, 6, 11, scale=4.0)
    for dim in (-1, 0):
        out = expect_tensor(ctx.call("softmax", x, dim=dim), f"softmax(x, dim={dim})", shape=x.shape, dtype=x.dtype)
        expect_finite(out, f"softmax(x, dim={dim})")
        sums = out.sum(dim)
        if (out < 0).any():
            fail(f"softmax(x, dim={dim}) has negative entries (min {out.min().item():.3g})")
        worst = (sums - 1).abs().reshape(-1).argmax()
        if (sums - 1).abs().max().item() > 1e-9:
            fail(f"softmax(x, dim={dim}) sums to {sums.reshape(-1)[worst].item():.6g} along dim, not 1",
                 guess(f"Is the sum taken over dim={dim}, with keepdim=True?"))


@hidden("softmax", points=2, group="properties")
def test_softmax_is_stable_for_large_inputs(ctx):
    """stays finite and exact for x + 1000, x - 1000 and rows of very different scales (float32)"""
    x = ctx.randn(4, 16, dtype=torch.float32)
    scales = torch.tensor([1e-3, 1.0, 1e2, 1e4], dtype=torch.float32).unsqueeze(-1)
    cases = {"softmax(x + 1000)": x + 1000, "softmax(x - 1000)": x - 1000,
             "softmax(rows scaled by 1e-3 .. 1e4)": x * scales}
    for what, inp in cases.items():
        expect_close(ctx.call("softmax", inp, dim=-1), reference.softmax(inp), what, **tolerance(torch.float32),
                     hint=guess("Subtract the maximum along dim (keepdim=True) before exp"))


@hidden("softmax", points=1, group="gradients")
def test_softmax_gradient_matches(ctx):
    """gradient w.r.t. x matches torch.softmax's"""
    x, g = ctx.randn(3, 7), ctx.randn(3, 7)
    result = ctx.call_full("softmax", x, dim=-1, grad={"wrt": [0], "grad_outputs": [g]})
    expect_tensor(result.value, "softmax(x)", shape=x.shape, dtype=x.dtype)
    expect_no_backward_error(result, "softmax")
    (want,), (pytorch,) = (grads_of(fn, [x], [g]) for fn in (reference.softmax, lambda t: torch.softmax(t, -1)))
    expect_matches(result.input_grads[0], want, pytorch, "d softmax / d x", dtype=torch.float64,
                   hint=guess("Is part of the computation detached (.detach(), .data, .item(), numpy)?"))


@hidden("softmax", points=1, group="hygiene")
def test_softmax_keeps_dtype_device_and_input(ctx):
    """keeps dtype and device, leaves its input unmodified, is deterministic"""
    for dtype in FLOATS:
        x = ctx.randn(3, 8, dtype=dtype)
        first = ctx.call_full("softmax", x, dim=-1)
        expect_keeps_dtype_device_input(ctx, first, x, "softmax(x)", dtype, input_name="softmax's input x")
        expect_deterministic(ctx.call_full("softmax", x, dim=-1), first, "softmax call", eval_mode=False)
