"""Hidden tests of Exercise 2, RMSNorm: root-mean-square normalisation, computed in float32 for half inputs.

Zhang & Sennrich, "Root Mean Square Layer Normalization" (2019): y = x / sqrt(mean(x**2) + eps) * weight, no
centring and no bias. Expected values: ``reference.rms_norm``, cross-checked against ``F.rms_norm``
(``oracles.py``).
"""

from __future__ import annotations

import torch

from autograder.checks import expect_close, expect_equal, expect_tensor, fail, tolerance
from autograder.hidden import hidden
from autograder.known_bugs.a4_residual_norm import rms_norm_suspects
from autograder.reference import EPS
from autograder.suites.a4_residual_norm import oracles
from autograder.suites.a4_residual_norm.inputs import (
    build_rms_norm,
    expect_norm_gradients,
    expect_norm_hygiene,
    expect_parameters,
    parameter_values,
)
from autograder.suites.common import dtype_name

# Half precision. A float32 result rounded to the half dtype once is within one unit roundoff u
# (2^-11 for float16, 2^-8 for bfloat16) relative; multiplying by the half-precision weight after
# that cast (LLaMA's order) rounds a second time, so a correct RMSNorm is within 2u + u^2. Doing the
# arithmetic in half precision rounds the squares, their mean, the reciprocal square root and the
# products: on 8192 outputs its worst error exceeded 2.1u in every one of 100 random trials.
HALF_UNIT_ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
HALF_ATOL = 1e-5  # float16 subnormals are spaced 6e-8 apart: only outputs below 1e-4 need it


def half_tolerance(dtype: torch.dtype) -> dict:
    return {"atol": HALF_ATOL, "rtol": 2.05 * HALF_UNIT_ROUNDOFF[dtype]}


@hidden("RMSNorm", points=1, group="shapes")
def test_rmsnorm_parameters_and_shape(ctx):
    """one parameter, weight (ones, shape (d_model,)); keeps the input's shape"""
    module = ctx.construct("RMSNorm", 8)
    expect_parameters(module, {"weight": (8,)}, "RMSNorm(8)",
                      "RMSNorm has one parameter, weight = nn.Parameter(torch.ones(d_model)), and no bias")
    expect_equal(parameter_values(module)["weight"], torch.ones(8), "RMSNorm(8).weight at initialisation",
                 hint="weight starts as ones")
    module.set_mode(train=False, dtype=torch.float64)
    for shape in [(8,), (5, 8), (2, 3, 8), (2, 3, 4, 8)]:
        expect_tensor(ctx.forward(module, ctx.randn(*shape)).value, f"RMSNorm(8) on x of shape {shape}", shape=shape,
                      hint="Reduce over the last dimension only, with keepdim=True")


@hidden("RMSNorm", points=2, group="numerics")
def test_rmsnorm_matches_reference(ctx):
    """matches F.rms_norm with the same weight (float64), for eps=1e-5 and eps=0.1"""
    # eps=0.1 first: at eps=1e-5, eps outside the square root and a float32 computation are both ~1e-6 off
    for d_model, eps, scale in [(16, 0.1, 0.3), (16, EPS, 2.0), (24, EPS, 1.0)]:
        module, state = build_rms_norm(ctx, d_model, eps=eps)
        x = ctx.randn(2, 5, d_model, scale=scale) + ctx.randn(2, 5, 1, scale=scale)  # tokens with non-zero means
        what = f"RMSNorm({d_model}, eps={eps}) output"
        got = ctx.forward(module, x).value
        expect_tensor(got, f"{what} for a float64 module and input", shape=x.shape, dtype=torch.float64,
                      hint="A float64 input stays float64: cast to float32 only for float16 and bfloat16 inputs")
        expect_close(got, oracles.norm("rms", state, x, eps), what, **tolerance(torch.float64),
                     suspects=rms_norm_suspects(state, x, eps),
                     hint="y = x / sqrt(mean(x**2, dim=-1, keepdim=True) + eps) * weight")


@hidden("RMSNorm", points=2, group="numerics")
def test_rmsnorm_half_precision(ctx):
    """float16 and bfloat16 inputs: output in the input's dtype, as accurate as the float32 result rounded"""
    for dtype in (torch.float16, torch.bfloat16):
        module, state = build_rms_norm(ctx, 64, dtype=dtype)
        x = ctx.randn(8, 16, 64, scale=3.0).to(dtype)
        what = f"RMSNorm(64) output for a {dtype_name(dtype)} module and input"
        got = ctx.forward(module, x).value
        expect_tensor(got, what, shape=x.shape, dtype=dtype,
                      hint="Compute in float32, then cast the result back to the input's dtype with .to(x.dtype)")
        expect_close(got, oracles.norm("rms", state, x), what, **half_tolerance(dtype),
                     hint=f"Its error exceeds what rounding the float32 result to {dtype_name(dtype)} allows: is the "
                          "normalisation computed in half precision? Compute in float32 (x.to(torch.float32)) and "
                          "cast back at the end")


@hidden("RMSNorm", points=1, group="numerics")
def test_rmsnorm_float16_large_values(ctx):
    """float16 features of a few hundred, whose squares overflow float16, are normalised correctly"""
    module, state = build_rms_norm(ctx, 64, dtype=torch.float16)
    x = ctx.randn(4, 8, 64, scale=300.0).to(torch.float16)
    got = ctx.forward(module, x).value
    what = "RMSNorm(64) output for float16 features near 300"
    expect_tensor(got, what, shape=x.shape, dtype=torch.float16, hint="Cast the float32 result back with .to(x.dtype)")
    expect_close(got, oracles.norm("rms", state, x), what, **half_tolerance(torch.float16),
                 hint="x**2 overflows float16 (largest value 65504) once |x| > 256, and x / sqrt(inf) = 0: "
                      "compute in float32 (x.to(torch.float32)) and cast back at the end")


@hidden("RMSNorm", points=1, group="properties")
def test_rmsnorm_is_scale_invariant(ctx):
    """with eps=0 and unit weight: every token gets root mean square 1; scaling x changes nothing"""
    module = ctx.construct("RMSNorm", 20, eps=0.0)
    module.set_mode(train=False, dtype=torch.float64)
    x = ctx.randn(3, 6, 20) + 1.0
    y = expect_tensor(ctx.forward(module, x).value, "RMSNorm(20, eps=0) output", shape=x.shape, dtype=x.dtype)
    mean_square = y.pow(2).mean(-1)
    if ((mean_square - 1).abs() > 1e-9).any():
        worst = mean_square.reshape(-1)[(mean_square - 1).abs().argmax()].item()
        fail(f"a token's output has mean square {worst:.6g}, expected 1",
             "Divide x by sqrt(mean(x**2)) over the last dimension")
    scale = ctx.randn(3, 6, 1).abs() + 0.1
    expect_close(ctx.forward(module, x * scale).value, y, "the output for each token scaled by a positive factor",
                 atol=1e-8, rtol=1e-8, hint="RMSNorm must remove each token's own scale")


@hidden("RMSNorm", points=1, group="gradients")
def test_rmsnorm_gradients_match(ctx):
    """gradients w.r.t. x and weight match F.rms_norm's"""
    module, state = build_rms_norm(ctx, 12)
    expect_norm_gradients(ctx, module, state, "rms", "RMSNorm",
                          "Is the root mean square detached (.detach(), .item(), torch.no_grad())? "
                          "The gradient flows through it")


@hidden("RMSNorm", points=1, group="hygiene")
def test_rmsnorm_keeps_dtype_device_and_input(ctx):
    """keeps dtype (float32, float64) and device, leaves x unmodified, is deterministic"""
    expect_norm_hygiene(ctx, build_rms_norm, "RMSNorm",
                        dtype_hint="Cast to float32 only for float16 and bfloat16 inputs, and return x's dtype")
