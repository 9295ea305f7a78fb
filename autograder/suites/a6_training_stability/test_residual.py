"""ResiDual: a Post-LN stream and a dual stream of the raw sublayer outputs, normalised once, at the end.

Xie et al., "ResiDual: Transformer with Dual Residual Connections" (2023), checked against its reference code
(github.com/microsoft/ResiDual, resi_dual/resi_dual_layers.py and resi_dual.py: ``res = res + x`` with the sublayer's
output, the dual stream starting as the input, ``x + self.layer_norm(res)`` at the end). Outputs and gradients are
compared in float64 with ``reference.residual`` given the very weights loaded into the student's stack.
"""

from __future__ import annotations

import torch

from autograder import reference
from autograder.checks import expect_close, expect_tensor, fail
from autograder.hidden import hidden
from autograder.known_bugs.a6_training_stability import residual_suspects
from autograder.suites.a5_transformer_lm.inputs import wire
from autograder.suites.a6_training_stability.inputs import (
    OUTPUT_TOL,
    SELF_TOL,
    build_residual,
    causal,
    check_residual,
    expect_gradients,
    expect_output,
    expect_same_in_float32,
    random_state,
)
from autograder.suites.common import (
    FLOATS,
    dtype_name,
    expect_deterministic,
    expect_keeps_dtype_device_input,
    load_weights,
)


def expect_streams(value) -> tuple:
    """ResiDualBlock.forward's result as the pair (x, dual)."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        kind = f"a {type(value).__name__} of length {len(value)}" if isinstance(value, (tuple, list)) else \
            type(value).__name__
        fail(f"ResiDualBlock.forward(x, dual, mask) returned {kind}, expected the pair (x, dual)",
             "Return both streams: return x, dual")
    return tuple(value)


@hidden("ResiDual", points=1, group="shapes")
def test_residual_structure(ctx):
    """has blocks (n_layers ResiDualBlocks with norm1, attn, norm2, ffn) and one norm_dual"""
    for d_model, n_heads, n_layers, d_ff in ((16, 2, 3, None), (12, 3, 1, 20)):
        what = f"ResiDual({d_model}, {n_heads}, n_layers={n_layers}{'' if d_ff is None else f', d_ff={d_ff}'})"
        check_residual(ctx.construct("ResiDual", d_model, n_heads, n_layers, d_ff), d_model, n_layers, d_ff, what)


@hidden("ResiDual", points=1, group="shapes")
def test_residual_block_returns_a_pair(ctx):
    """ResiDualBlock.forward(x, dual, mask) returns the pair (x, dual), each (B, T, d_model)"""
    block = ctx.construct("ResiDualBlock", 16, 2)
    x, dual = ctx.randn(2, 5, 16, dtype=torch.float32), ctx.randn(2, 5, 16, dtype=torch.float32)
    pair = expect_streams(ctx.forward(block, x, dual, causal(5)).value)
    for value, name in zip(pair, ("x", "dual")):
        expect_tensor(value, f"the new {name} of ResiDualBlock.forward", shape=(2, 5, 16), dtype=torch.float32,
                      hint="Return both streams: return x, dual")


@hidden("ResiDual", points=1, group="numerics")
def test_residual_block_matches_reference(ctx):
    """one ResiDualBlock: the Post-LN stream and the dual stream (plus the raw attn and ffn outputs) match"""
    d_model, n_heads = 16, 2
    block = ctx.construct("ResiDualBlock", d_model, n_heads)
    state = random_state(ctx, reference.under("", reference.block_shapes(d_model)))
    block.set_mode(train=False, dtype=torch.float64)
    load_weights(block, state, "ResiDualBlock")
    x, dual, mask = ctx.randn(3, 6, d_model), ctx.randn(3, 6, d_model), causal(6)
    got = expect_streams(ctx.forward(block, x, dual, mask).value)
    want = reference.residual_block(state, x, dual, mask, n_heads=n_heads)
    expect_close(got[0], want[0], "the new x of ResiDualBlock(16, 2)", **OUTPUT_TOL,
                 hint="x = norm1(x + a) with a = attn(x, mask); then x = norm2(x + f) with f = ffn(x) of the new x")
    expect_close(got[1], want[1], "the new dual of ResiDualBlock(16, 2)", **OUTPUT_TOL,
                 hint="dual = dual + a + f: the raw outputs of attention and FFN, never normalised in the block")


@hidden("ResiDual", points=3, group="numerics")
def test_residual_matches_reference(ctx):
    """the stack's output x_a + norm_dual(x_d) matches a float64 reference (1 and 3 layers)"""
    for d_model, n_heads, n_layers, d_ff in ((16, 2, 3, None), (12, 3, 1, 20)):
        model, state, what = build_residual(ctx, d_model, n_heads, n_layers, d_ff)
        x, mask = ctx.randn(2, 7, d_model), causal(7)
        expect_output(ctx, model, x, mask, reference.residual(state, x, mask, n_heads=n_heads),
                      residual_suspects(state, x, mask, n_heads=n_heads), what,
                      "dual = x; for each block x, dual = block(x, dual, mask); return x + norm_dual(dual)")


@hidden("ResiDual", points=1, group="properties")
def test_residual_is_causal(ctx):
    """with a causal mask, changing the inputs after position t leaves the outputs at 0..t unchanged"""
    model, _, what = build_residual(ctx, 16, 2, 2)
    x = ctx.randn(2, 8, 16)
    base = expect_tensor(ctx.forward(model, x, causal(8)).value, f"{what} output", shape=(2, 8, 16))
    for t in (0, 5):
        changed = x.clone()
        changed[:, t + 1:] = ctx.randn(2, 7 - t, 16)
        out = expect_tensor(ctx.forward(model, changed, causal(8)).value, f"{what} output", shape=(2, 8, 16))
        expect_close(wire(out[:, :t + 1]), base[:, :t + 1],
                     f"{what} outputs at positions 0..{t} after changing only the inputs at {t + 1}..7", **SELF_TOL,
                     hint="Pass the mask to the attention of every block: block(x, dual, mask)")


@hidden("ResiDual", points=2, group="gradients")
def test_residual_gradients_match(ctx):
    """every parameter and the input receive the reference gradients"""
    d_model, n_heads, n_layers = 12, 3, 2
    model, state, what = build_residual(ctx, d_model, n_heads, n_layers)
    x, g = ctx.randn(2, 6, d_model), ctx.randn(2, 6, d_model)
    result = ctx.forward(model, x, causal(6), grad={"wrt": [0], "grad_outputs": [g]})
    expect_gradients(result, state, x, g, lambda s, h: reference.residual(s, h, causal(6), n_heads=n_heads), what,
                     hint="The input feeds both streams: the Post-LN stream and the dual stream (dual = x)")


@hidden("ResiDual", points=1, group="hygiene")
def test_residual_keeps_dtype_and_input(ctx):
    """keeps the input's dtype, leaves the input unmodified, is deterministic in eval(), computes the same in float32"""
    state = None  # one set of weights for both dtypes: the liveness rule compares the two results
    for dtype in FLOATS:
        model, state, what = build_residual(ctx, 16, 2, 2, dtype=dtype, state=state)
        x = ctx.randn(2, 5, 16, dtype=dtype)
        first = ctx.forward(model, x)
        expect_keeps_dtype_device_input(ctx, first, x, f"{what} ({dtype_name(dtype)})", dtype)
        expect_deterministic(ctx.forward(model, x), first, f"{what} forward")
        if dtype == torch.float32:
            expect_same_in_float32(first, reference.residual(state, x, n_heads=2), what)
