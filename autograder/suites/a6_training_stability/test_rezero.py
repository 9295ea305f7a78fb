"""ReZeroBlock: no norm, both residual branches scaled by one learned scalar alpha that starts at 0.

Bachlechner et al., "ReZero is All You Need: Fast Convergence at Large Depth" (2020); their reference code
(``RZTXEncoderLayer``, github.com/majumderb/rezero) shares one ``resweight`` between a layer's two branches, as the
exercise does. Outputs and gradients are compared in float64 with ``reference.rezero_block`` given the very weights
loaded into the student's block.
"""

from __future__ import annotations

import torch

from autograder import autodiff, reference
from autograder.checks import expect_close, expect_equal, expect_no_backward_error, fail
from autograder.hidden import hidden
from autograder.known_bugs.a6_training_stability import rezero_suspects
from autograder.suites.a6_training_stability.inputs import (
    GRADIENT_TOL,
    build_rezero,
    causal,
    check_rezero,
    expect_gradients,
    expect_output,
    expect_same_in_float32,
)
from autograder.suites.common import (
    FLOATS,
    dtype_name,
    expect_deterministic,
    expect_keeps_dtype_device_input,
    load_weights,
)


@hidden("ReZeroBlock", points=1, group="shapes")
def test_rezero_structure(ctx):
    """has attn, ffn and one scalar alpha of shape (1,), and no norm"""
    for d_model, n_heads, d_ff in ((16, 2, None), (12, 3, 20)):
        what = f"ReZeroBlock({d_model}, {n_heads}{'' if d_ff is None else f', d_ff={d_ff}'})"
        check_rezero(ctx.construct("ReZeroBlock", d_model, n_heads, d_ff), d_model, d_ff, what)


@hidden("ReZeroBlock", points=2, group="properties")
def test_rezero_is_identity_at_init(ctx):
    """a freshly built block returns its input exactly (alpha starts at 0), with and without a mask"""
    for d_model, n_heads in ((16, 2), (24, 4)):
        block = ctx.construct("ReZeroBlock", d_model, n_heads)
        what = f"a freshly built ReZeroBlock({d_model}, {n_heads})"
        alpha = block.parameters.get("alpha")
        if alpha is not None and alpha.tensor is not None and alpha.tensor.numel() == 1 and alpha.tensor.item() != 0:
            fail(f"{what} has alpha = {alpha.tensor.item():g}", "alpha starts at 0: nn.Parameter(torch.zeros(1)), so "
                 "that the block is exactly the identity at initialisation", named=True)
        block.set_mode(train=False, dtype=torch.float64)
        x = ctx.randn(2, 7, d_model, scale=2.0)
        for mask in (None, causal(7)):
            out = ctx.forward(block, x, mask)
            expect_equal(out.value, x, f"{what}, output{' with a causal mask' if mask is not None else ''}",
                         hint="With alpha = 0 the block must be exactly x: both branches are scaled by alpha, and "
                              "ReZero has no norm (a LayerNorm on the stream changes x even when alpha = 0)")


@hidden("ReZeroBlock", points=2, group="numerics")
def test_rezero_matches_reference(ctx):
    """with alpha away from 0: matches a float64 reference x + alpha * attn(x), then + alpha * ffn(x)"""
    for d_model, n_heads, d_ff in ((16, 2, None), (12, 3, 20)):
        block, state, what = build_rezero(ctx, d_model, n_heads, d_ff)
        x, mask = ctx.randn(3, 6, d_model), causal(6)
        expect_output(ctx, block, x, mask, reference.rezero_block(state, x, mask, n_heads=n_heads),
                      rezero_suspects(state, x, mask, n_heads=n_heads), what,
                      "x = x + alpha * attn(x, mask); return x + alpha * ffn(x)")


@hidden("ReZeroBlock", points=1, group="gradients")
def test_rezero_only_alpha_learns_at_init(ctx):
    """at initialisation alpha gets the reference gradient and every attention and FFN weight exactly 0"""
    d_model, n_heads = 16, 2
    block, state, what = build_rezero(ctx, d_model, n_heads)
    state = {**state, "alpha": torch.zeros(1, dtype=torch.float64)}  # as initialised
    load_weights(block, state, what)
    x, g = ctx.randn(2, 5, d_model), ctx.randn(2, 5, d_model)
    result = ctx.forward(block, x, causal(5), grad={"wrt": [0], "grad_outputs": [g]})
    expect_no_backward_error(result, "ReZeroBlock")
    leaves = {k: v.clone().requires_grad_(True) for k, v in state.items()}
    autodiff.backward(reference.rezero_block(leaves, x, causal(5), n_heads=n_heads), g)
    grads = result.param_grads
    if grads.get("alpha") is None:
        fail(f"{what}: alpha received no gradient", "alpha must multiply both branches in forward")
    expect_close(grads["alpha"], leaves["alpha"].grad, f"{what} with alpha = 0: gradient of alpha", **GRADIENT_TOL)
    for name, grad in grads.items():
        if name != "alpha" and grad.tensor is not None and grad.tensor.abs().max() > 0:
            fail(f"{what} with alpha = 0: {name} received a gradient of size {grad.tensor.abs().max().item():.3g}, "
                 "expected exactly 0", "Scale both branches by alpha: with alpha = 0 no branch weight can matter yet",
                 named=True)


@hidden("ReZeroBlock", points=1, group="gradients")
def test_rezero_gradients_match(ctx):
    """every parameter and the input receive the reference gradients"""
    d_model, n_heads = 12, 3
    block, state, what = build_rezero(ctx, d_model, n_heads, 20)
    x, g = ctx.randn(2, 6, d_model), ctx.randn(2, 6, d_model)
    result = ctx.forward(block, x, causal(6), grad={"wrt": [0], "grad_outputs": [g]})
    expect_gradients(result, state, x, g, lambda s, h: reference.rezero_block(s, h, causal(6), n_heads=n_heads), what)


@hidden("ReZeroBlock", points=1, group="hygiene")
def test_rezero_keeps_dtype_and_input(ctx):
    """keeps the input's dtype, leaves the input unmodified, is deterministic in eval(), computes the same in float32"""
    for dtype in FLOATS:
        block, state, what = build_rezero(ctx, 16, 2, dtype=dtype)
        x = ctx.randn(2, 5, 16, dtype=dtype)
        first = ctx.forward(block, x)
        expect_keeps_dtype_device_input(ctx, first, x, f"{what} ({dtype_name(dtype)})", dtype)
        expect_deterministic(ctx.forward(block, x), first, f"{what} forward")
        if dtype == torch.float32:
            expect_same_in_float32(first, reference.rezero_block(state, x, n_heads=2), what)
