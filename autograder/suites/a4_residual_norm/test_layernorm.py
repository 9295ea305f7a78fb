"""Hidden tests of Exercise 1, LayerNorm: layer normalisation over the last dimension, as nn.LayerNorm.

Ba, Kiros & Hinton, "Layer Normalization" (2016): y = (x - mean) / sqrt(var + eps) * weight + bias, with the
mean and the biased variance of each token's features. Expected values: ``reference.layer_norm``, cross-checked
against ``F.layer_norm`` (``oracles.py``).
"""

from __future__ import annotations

import torch

from autograder.checks import expect_close, expect_equal, expect_tensor, fail, tolerance
from autograder.hidden import hidden
from autograder.known_bugs.a4_residual_norm import layer_norm_suspects
from autograder.reference import EPS
from autograder.suites.a4_residual_norm import oracles
from autograder.suites.a4_residual_norm.inputs import (
    build_layer_norm,
    expect_norm_gradients,
    expect_norm_hygiene,
    expect_parameters,
    parameter_values,
)

# Float32 inputs near 1000 are exact in the grader (cast from float64 before the oracle sees them), but
# their mean in float32 is not: nn.LayerNorm itself is off by up to 3e-4 there. mean(x**2) - mean**2
# loses everything (float32 numbers near x**2 ~ 1e6 are 0.0625 apart), giving errors of 0.1 and more.
SHIFTED_FLOAT32 = {"atol": 2e-3, "rtol": 1e-3}


def check_layer_norm(ctx, module, state, x, eps, what, tol, hint=None, suspects=True):
    got = ctx.forward(module, x).value
    expect_tensor(got, what, shape=x.shape, dtype=x.dtype)
    expect_close(got, oracles.norm("layer", state, x, eps), what, **tol, hint=hint,
                 suspects=layer_norm_suspects(state, x, eps) if suspects else None)


@hidden("LayerNorm", points=1, group="shapes")
def test_layernorm_parameters(ctx):
    """weight (ones) and bias (zeros) of shape (d_model,); no parameters when elementwise_affine=False"""
    for d_model in (8, 1):
        module = ctx.construct("LayerNorm", d_model)
        expect_parameters(module, {"weight": (d_model,), "bias": (d_model,)}, f"LayerNorm({d_model})",
                          "Create self.weight and self.bias as nn.Parameter of shape (d_model,)")
        params = parameter_values(module)
        expect_equal(params["weight"], torch.ones(d_model), f"LayerNorm({d_model}).weight at initialisation",
                     hint="weight starts as ones (torch.ones(d_model)), like nn.LayerNorm")
        expect_equal(params["bias"], torch.zeros(d_model), f"LayerNorm({d_model}).bias at initialisation",
                     hint="bias starts as zeros (torch.zeros(d_model)), like nn.LayerNorm")
    expect_parameters(ctx.construct("LayerNorm", 8, elementwise_affine=False), {},
                      "LayerNorm(8, elementwise_affine=False)",
                      'Register weight and bias as None (self.register_parameter("weight", None)) when '
                      "elementwise_affine is False")


@hidden("LayerNorm", points=1, group="shapes")
def test_layernorm_output_shape(ctx):
    """keeps the input's shape for 1 to 4 dimensions"""
    module, _ = build_layer_norm(ctx, 6)
    for shape in [(6,), (5, 6), (2, 3, 6), (2, 3, 4, 6)]:
        expect_tensor(ctx.forward(module, ctx.randn(*shape)).value, f"LayerNorm(6) on x of shape {shape}", shape=shape,
                      hint="Reduce over the last dimension only, with keepdim=True, so the statistics broadcast back")


@hidden("LayerNorm", points=3, group="numerics")
def test_layernorm_matches_reference(ctx):
    """matches nn.LayerNorm with the same weight and bias (float64)"""
    for d_model, shape, affine in [(16, (2, 5), True), (24, (3, 4), True), (16, (2, 3), False)]:
        module, state = build_layer_norm(ctx, d_model, affine=affine)
        x = ctx.randn(*shape, d_model, scale=2.0) + ctx.randn(*shape, 1)  # a different mean for every token
        check_layer_norm(ctx, module, state, x, EPS, f"LayerNorm({d_model}, elementwise_affine={affine}) output",
                         tolerance(torch.float64),
                         hint="y = (x - mean) / sqrt(var + eps) * weight + bias, with the mean and the biased variance "
                              "over the last dimension")


@hidden("LayerNorm", points=1, group="numerics")
def test_layernorm_eps_inside_sqrt(ctx):
    """with eps=0.1 and small variances, eps sits inside the square root and is the module's own"""
    module, state = build_layer_norm(ctx, 16, eps=0.1)
    x = ctx.randn(3, 5, 16) * torch.tensor([0.1, 0.3, 1.0], dtype=torch.float64).reshape(3, 1, 1)
    check_layer_norm(ctx, module, state, x, 0.1, "LayerNorm(16, eps=0.1) output", tolerance(torch.float64),
                     hint="Divide by sqrt(var + self.eps)")


@hidden("LayerNorm", points=1, group="numerics")
def test_layernorm_tiny_d_model(ctx):
    """d_model of 1, 2 and 3: the biased variance (d_model = 1 gives exactly the bias)"""
    for d_model in (2, 3, 1):
        module, state = build_layer_norm(ctx, d_model)
        x = ctx.randn(4, 5, d_model, scale=2.0)
        check_layer_norm(ctx, module, state, x, EPS, f"LayerNorm({d_model}) output", tolerance(torch.float64),
                         hint="Use the biased variance (divide by d_model): with d_model = 1 the unbiased one is "
                              "0 / 0 = nan")


@hidden("LayerNorm", points=1, group="numerics")
def test_layernorm_float32_stress(ctx):
    """float32: matches the float64 reference, also for features near 1000 and rows of very different scales"""
    module, state = build_layer_norm(ctx, 32, dtype=torch.float32)
    x = ctx.randn(4, 8, 32)
    scales = torch.logspace(-3, 3, 8, dtype=torch.float64).reshape(1, 8, 1)
    check_layer_norm(ctx, module, state, x.to(torch.float32), EPS, "float32 LayerNorm output", tolerance(torch.float32))
    check_layer_norm(ctx, module, state, (x * scales).to(torch.float32), EPS,
                     "float32 LayerNorm of rows scaled by 1e-3 .. 1e3", tolerance(torch.float32))
    check_layer_norm(ctx, module, state, (x + 1000).to(torch.float32), EPS, "float32 LayerNorm of x + 1000",
                     SHIFTED_FLOAT32, suspects=False,
                     hint="Compute the variance as the mean of (x - mean)**2; mean(x**2) - mean**2 cancels "
                          "catastrophically when the mean is large compared with the spread")


@hidden("LayerNorm", points=1, group="properties")
def test_layernorm_normalises_each_token(ctx):
    """with eps=0 and no affine: every token gets mean 0 and mean square 1, whatever its offset and scale"""
    module, _ = build_layer_norm(ctx, 20, eps=0.0, affine=False)
    x = ctx.randn(3, 6, 20)
    y = expect_tensor(ctx.forward(module, x).value, "LayerNorm(20, eps=0, elementwise_affine=False) output",
                      shape=x.shape, dtype=x.dtype)
    mean, mean_square = y.mean(-1), y.pow(2).mean(-1)
    if (mean.abs() > 1e-9).any() or ((mean_square - 1).abs() > 1e-9).any():
        worst = (mean_square - 1).abs().argmax()
        fail(f"a token's output has mean {mean.reshape(-1)[worst].item():.3g} and mean square "
             f"{mean_square.reshape(-1)[worst].item():.6g} over the features, expected 0 and 1",
             "Subtract the mean and divide by the square root of the biased variance, both over the last dimension")
    shift, scale = ctx.randn(3, 6, 1, scale=10.0), ctx.randn(3, 6, 1).abs() + 0.1
    expect_close(ctx.forward(module, x * scale + shift).value, y, "the output for each token scaled and shifted",
                 atol=1e-8, rtol=1e-8, hint="LayerNorm must remove each token's own mean and scale")


@hidden("LayerNorm", points=1, group="gradients")
def test_layernorm_gradients_match(ctx):
    """gradients w.r.t. x, weight and bias match nn.LayerNorm's"""
    module, state = build_layer_norm(ctx, 12)
    expect_norm_gradients(ctx, module, state, "layer", "LayerNorm",
                          "Are the mean or the variance detached (.detach(), .item(), torch.no_grad())? "
                          "The gradient flows through both")


@hidden("LayerNorm", points=1, group="hygiene")
def test_layernorm_keeps_dtype_device_and_input(ctx):
    """keeps dtype and device, leaves x unmodified, is deterministic"""
    expect_norm_hygiene(ctx, build_layer_norm, "LayerNorm")
