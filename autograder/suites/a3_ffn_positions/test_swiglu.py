"""Hidden tests of SwiGLU: the gated feed-forward network down(silu(gate(x)) * up(x)).

From Shazeer, "GLU Variants Improve Transformer" (2020), without biases by default as in LLaMA. Expected values:
``reference.swiglu`` in float64 with the weights the test loads into the student's module; known bugs:
``known_bugs.a3_ffn_positions``.
"""

from __future__ import annotations

import torch

from autograder import reference
from autograder.checks import expect_close, expect_tensor, fail, tolerance
from autograder.hidden import hidden
from autograder.known_bugs.a3_ffn_positions import swiglu_suspects
from autograder.suites.a3_ffn_positions.inputs import build_swiglu
from autograder.suites.a3_ffn_positions.module_checks import (
    expect_gradients_match,
    expect_matches_in_float32,
    expect_module_hygiene,
    expect_position_wise,
)


@hidden("SwiGLU", points=1, group="shapes")
def test_swiglu_structure(ctx):
    """has gate, up (d_model -> d_ff) and down (d_ff -> d_model), no biases by default, and keeps (..., d_model)"""
    module, _ = build_swiglu(ctx, 8, 12)
    for name in ("gate", "up", "down"):
        if name not in module.submodules:
            fail(f"SwiGLU has no submodule named {name}", f"Create self.{name} as an nn.Linear in __init__")
    build_swiglu(ctx, 6, 10, bias=True)
    for shape in [(5, 8), (2, 5, 8), (2, 3, 4, 8)]:
        expect_tensor(ctx.forward(module, ctx.randn(*shape)).value, f"SwiGLU(8, 12) on x of shape {shape}", shape=shape)


@hidden("SwiGLU", points=2, group="numerics")
def test_swiglu_matches_reference(ctx):
    """matches down(silu(gate(x)) * up(x)) with the same weights (float64, and float32 within tolerance)"""
    for d_model, d_ff, bias in [(12, 32, None), (8, 20, True)]:
        module, state = build_swiglu(ctx, d_model, d_ff, bias=bias)
        x = ctx.randn(2, 6, d_model, scale=1.5)
        what = f"SwiGLU({d_model}, {d_ff}, bias={bool(bias)}) output"
        got = ctx.forward(module, x).value
        expect_tensor(got, f"{what} for a float64 module and input", dtype=torch.float64)
        expect_close(got, reference.swiglu(state, x), what, **tolerance(torch.float64),
                     suspects=swiglu_suspects(state, x),
                     hint="SwiGLU is down(F.silu(gate(x)) * up(x)), with silu(z) = z * sigmoid(z)")
    module, state = build_swiglu(ctx, 16, 48, dtype=torch.float32)
    expect_matches_in_float32(ctx, module, state, reference.swiglu, swiglu_suspects, (3, 4, 16),
                              "float32 SwiGLU output")


@hidden("SwiGLU", points=1, group="properties")
def test_swiglu_acts_on_each_position_independently(ctx):
    """acts on each position independently: d out[b, t] / d x[b', t'] is exactly 0 for (b', t') != (b, t)"""
    module, _ = build_swiglu(ctx, 8, 12)
    expect_position_wise(ctx, module, "SwiGLU", 8)


@hidden("SwiGLU", points=1, group="gradients")
def test_swiglu_gradients_match(ctx):
    """gradients w.r.t. the input and every parameter match the reference"""
    module, state = build_swiglu(ctx, 8, 12, bias=True)
    expect_gradients_match(ctx, module, state, reference.swiglu, "SwiGLU", 8)


@hidden("SwiGLU", points=1, group="hygiene")
def test_swiglu_keeps_dtype_device_and_input(ctx):
    """keeps dtype and device, leaves x unmodified, is deterministic in eval()"""
    expect_module_hygiene(ctx, lambda dtype: build_swiglu(ctx, 8, 12, dtype=dtype)[0], "SwiGLU(8, 12)", 8)
