"""Hidden tests of FeedForward: the position-wise feed-forward network down(dropout(act(up(x)))).

From Vaswani et al., "Attention Is All You Need" (2017), §3.3, with the ReLU of the paper or the exact GELU of
Hendrycks & Gimpel, "Gaussian Error Linear Units (GELUs)" (2016). Expected values: ``reference.feed_forward`` in
float64 with the weights the test loads into the student's module; known bugs: ``known_bugs.a3_ffn_positions``.
"""

from __future__ import annotations

import torch

from autograder import reference
from autograder.checks import expect_close, expect_tensor, fail, tolerance
from autograder.hidden import hidden
from autograder.known_bugs.a3_ffn_positions import ffn_suspects
from autograder.suites.a3_ffn_positions.inputs import build_ffn
from autograder.suites.a3_ffn_positions.module_checks import (
    expect_gradients_match,
    expect_matches_in_float32,
    expect_module_hygiene,
    expect_position_wise,
)


@hidden("FeedForward", points=1, group="shapes")
def test_ffn_structure(ctx):
    """has up (d_model -> d_ff) and down (d_ff -> d_model); d_ff defaults to 4 * d_model; bias=False has no biases"""
    module, _ = build_ffn(ctx, 8, explicit=False)
    subs = module.submodules
    for name in ("up", "down"):
        if name not in subs:
            fail(f"FeedForward has no submodule named {name}", f"Create self.{name} as an nn.Linear in __init__")
    for d_model, d_ff, bias, activation in [(6, 10, False, "gelu"), (8, None, False, "relu"), (5, 7, True, "relu")]:
        build_ffn(ctx, d_model, d_ff, activation=activation, bias=bias)


@hidden("FeedForward", points=1, group="shapes")
def test_ffn_output_shapes(ctx):
    """keeps the shape (..., d_model) for 0, 1 and 2 leading dimensions besides T"""
    module, _ = build_ffn(ctx, 8, 12)
    for shape in [(5, 8), (2, 5, 8), (2, 3, 4, 8), (1, 1, 8)]:
        x = ctx.randn(*shape)
        expect_tensor(ctx.forward(module, x).value, f"FeedForward(8, 12) on x of shape {shape}", shape=shape)


@hidden("FeedForward", points=3, group="numerics")
def test_ffn_matches_reference(ctx):
    """matches down(act(up(x))) in float64 with the same weights, for GELU and ReLU, with and without biases"""
    for d_model, d_ff, activation, bias in [(12, 40, "gelu", True), (12, 40, "relu", True), (8, None, "gelu", False),
                                            (10, 24, "relu", False), (6, None, "default", True)]:
        if activation == "default":  # FeedForward(6) alone: d_ff = 24 and the default activation, GELU
            module, state = build_ffn(ctx, d_model, explicit=False)
            activation, what = "gelu", f"FeedForward({d_model}) output (default activation)"
        else:
            module, state = build_ffn(ctx, d_model, d_ff, activation=activation, bias=bias)
            what = f"FeedForward({d_model}, d_ff={d_ff}, activation={activation!r}, bias={bias}) output"
        x = ctx.randn(2, 7, d_model, scale=2.0)  # pre-activations of a few units, where GELU approximations differ most
        got = ctx.forward(module, x).value
        expect_tensor(got, f"{what} for a float64 module and input", dtype=torch.float64)
        expect_close(got, reference.feed_forward(state, x, activation), what, **tolerance(torch.float64),
                     suspects=ffn_suspects(state, x, activation),
                     hint="The FFN is down(act(up(x))), with act = F.gelu (exact) or F.relu as `activation` says")


@hidden("FeedForward", points=1, group="numerics")
def test_ffn_matches_in_float32(ctx):
    """matches the float64 reference within float32 tolerance"""
    module, state = build_ffn(ctx, 16, 64, dtype=torch.float32)
    expect_matches_in_float32(ctx, module, state, reference.feed_forward, ffn_suspects, (3, 5, 16),
                              "float32 FeedForward output")


@hidden("FeedForward", points=1, group="properties")
def test_ffn_acts_on_each_position_independently(ctx):
    """acts on each position independently: d out[b, t] / d x[b', t'] is exactly 0 for (b', t') != (b, t)"""
    module, _ = build_ffn(ctx, 8, 16)
    expect_position_wise(ctx, module, "FeedForward", 8)


@hidden("FeedForward", points=2, group="gradients")
def test_ffn_gradients_match(ctx):
    """gradients w.r.t. the input and every parameter match the reference"""
    module, state = build_ffn(ctx, 8, 20)
    expect_gradients_match(ctx, module, state, reference.feed_forward, "FeedForward", 8)


@hidden("FeedForward", points=1, group="hygiene")
def test_ffn_keeps_dtype_device_and_input(ctx):
    """keeps dtype and device, leaves x unmodified, is deterministic in eval() even with dropout=0.5"""
    expect_module_hygiene(ctx, lambda dtype: build_ffn(ctx, 8, 16, dtype=dtype)[0], "FeedForward(8, 16)", 8)
    # The same weights with and without dropout: in eval() mode dropout is the identity, whatever else the module does.
    plain, state = build_ffn(ctx, 8, 16)
    dropping, _ = build_ffn(ctx, 8, 16, dropout=0.5, state=state)
    x = ctx.randn(2, 4, 8)
    own = expect_tensor(ctx.forward(plain, x).value, "FeedForward(8, 16) output")
    expect_close(ctx.forward(dropping, x).value, own, "FeedForward(8, 16, dropout=0.5) output in eval() mode",
                 **tolerance(torch.float64),
                 hint="The reference here is your own FeedForward(8, 16) with the same weights and dropout=0.0. "
                      "Dropout must be off in eval() mode: use nn.Dropout, or F.dropout(h, p, training=self.training)")
