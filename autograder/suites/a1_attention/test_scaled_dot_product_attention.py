"""Hidden tests of scaled_dot_product_attention(q, k, v) -> (softmax(q @ k^T / sqrt(d_k)) @ v, the weights).

Vaswani et al., "Attention Is All You Need" (2017), §3.2.1: scaled dot-product attention, and why the scores are
divided by sqrt(d_k).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from autograder import reference
from autograder.checks import (
    expect_close,
    expect_finite,
    expect_no_backward_error,
    expect_pair,
    expect_tensor,
    expect_unchanged,
    fail,
    guess,
    tolerance,
)
from autograder.hidden import hidden
from autograder.known_bugs.a1_attention import attention_output_suspects, attention_weights_suspects
from autograder.suites.a1_attention.inputs import expect_matches, grads_of, sdpa_inputs
from autograder.suites.common import FLOATS, dtype_name
from autograder.wire import WireTensor


@hidden("scaled_dot_product_attention", points=2, group="shapes")
def test_attention_shapes(ctx):
    """returns (out, weights) with exact shapes: T_q != T_k, d_v != d_k, 0-2 batch dims"""
    sizes = [((), 5, 7, 8, 6), ((3,), 4, 4, 16, 16), ((2, 3), 1, 9, 4, 12), ((2, 3), 6, 2, 8, 3)]
    for batch, t_q, t_k, d_k, d_v in sizes:
        q, k, v = sdpa_inputs(ctx, batch, t_q, t_k, d_k, d_v)
        what = f"attention(q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)})"
        out, weights = expect_pair(ctx.call("scaled_dot_product_attention", q, k, v), what)
        _expect_attention_layout(out, weights, what, batch, t_q, t_k, d_v)
        expect_tensor(out, f"out of {what}", shape=(*batch, t_q, d_v),
                      hint="out is weights @ v: (..., T_q, T_k) @ (..., T_k, d_v)")
        expect_tensor(weights, f"weights of {what}", shape=(*batch, t_q, t_k),
                      hint="weights are softmax(q @ k^T / sqrt(d_k)): (..., T_q, T_k)")


def _expect_attention_layout(out, weights, what, batch, t_q, t_k, d_v) -> None:
    """Name two layout slips that a shape mismatch alone does not explain."""
    def shape(value):
        return tuple(value.shape) if isinstance(value, WireTensor) else None

    want_out, want_w = (*batch, t_q, d_v), (*batch, t_q, t_k)
    if want_out != want_w and shape(out) == want_w and shape(weights) == want_out:
        fail(f"{what} returned a first tensor of shape {want_w} (the weights' shape) and a second of shape {want_out} "
             "(the output's)", "Return (out, weights) in that order")
    if t_q != t_k and shape(weights) == (*batch, t_k, t_q):
        fail(f"weights of {what} have shape {(*batch, t_k, t_q)}, that is (..., T_k, T_q), expected (..., T_q, T_k) = "
             f"{want_w}", "The weights are transposed: return softmax(q @ k^T / sqrt(d_k)) as it is, one row per query")


@hidden("scaled_dot_product_attention", points=3, group="numerics")
def test_attention_matches_reference(ctx):
    """out and weights match F.scaled_dot_product_attention in float64"""
    q, k, v = sdpa_inputs(ctx, (2, 3), 5, 7, 8, 6)
    out, weights = expect_pair(ctx.call("scaled_dot_product_attention", q, k, v), "scaled_dot_product_attention")
    want_out, want_w = reference.scaled_dot_product_attention(q, k, v)
    for what, value in (("attention weights", weights), ("attention output", out)):
        expect_tensor(value, f"{what} for float64 inputs", dtype=torch.float64)
    expect_matches(weights, want_w, torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), -1),
                   "attention weights", dtype=torch.float64, suspects=attention_weights_suspects(q, k, v),
                   hint="weights = softmax(q @ k.transpose(-2, -1) / sqrt(d_k), dim=-1)")
    expect_matches(out, want_out, F.scaled_dot_product_attention(q, k, v), "attention output", dtype=torch.float64,
                   suspects=attention_output_suspects(q, k, v), hint="out = weights @ v")


@hidden("scaled_dot_product_attention", points=1, group="numerics")
def test_attention_matches_reference_float32(ctx):
    """matches the float64 reference within float32 tolerance"""
    q, k, v = sdpa_inputs(ctx, (4,), 6, 6, 16, 16, dtype=torch.float32)
    out, weights = expect_pair(ctx.call("scaled_dot_product_attention", q, k, v), "scaled_dot_product_attention")
    want_out, want_w = reference.scaled_dot_product_attention(q, k, v)
    expect_close(weights, want_w, "float32 attention weights", **tolerance(torch.float32),
                 suspects=attention_weights_suspects(q, k, v))
    expect_close(out, want_out, "float32 attention output", **tolerance(torch.float32))


@hidden("scaled_dot_product_attention", points=1, group="properties")
def test_attention_weights_are_distributions(ctx):
    """each query's weights are non-negative and sum to 1 over the keys"""
    q, k, v = sdpa_inputs(ctx, (2,), 6, 9, 8, 8)
    _, weights = expect_pair(ctx.call("scaled_dot_product_attention", q, k, v), "scaled_dot_product_attention")
    w = expect_finite(expect_tensor(weights, "attention weights", shape=(2, 6, 9), dtype=torch.float64),
                      "attention weights", guess("Does attention use your stable softmax?"))
    sums = w.sum(-1)
    if (w < 0).any() or (sums - 1).abs().max() > 1e-9:
        fail(f"attention rows sum to {sums.reshape(-1)[(sums - 1).abs().reshape(-1).argmax()].item():.4g}, not 1",
             guess("Is the softmax over the last dimension (the keys)?"))


@hidden("scaled_dot_product_attention", points=1, group="properties")
def test_attention_is_permutation_equivariant(ctx):
    """permuting keys with values changes nothing; permuting queries permutes the output"""
    q, k, v = sdpa_inputs(ctx, (2,), 5, 8, 4, 4)
    out, _ = expect_pair(ctx.call("scaled_dot_product_attention", q, k, v), "scaled_dot_product_attention")
    out = expect_tensor(out, "attention output", shape=(2, 5, 4), dtype=torch.float64)
    pk, pq = ctx.permutation(8), ctx.permutation(5)
    out_k, _ = ctx.call("scaled_dot_product_attention", q, k[:, pk], v[:, pk])
    expect_close(out_k, out, "output after permuting keys and values together", **tolerance(torch.float64),
                 hint=guess("Keys and values must be paired by position; the output is a weighted set, order-free"))
    out_q, _ = ctx.call("scaled_dot_product_attention", q[:, pq], k, v)
    expect_close(out_q, out[:, pq], "output after permuting the queries", **tolerance(torch.float64),
                 hint=guess("Each query's output must depend only on that query"))


@hidden("scaled_dot_product_attention", points=1, group="properties")
def test_attention_is_stable_for_large_scores(ctx):
    """stays finite and correct when scores are in the thousands (float32)"""
    q, k, v = sdpa_inputs(ctx, (2,), 4, 6, 8, 8, dtype=torch.float32)
    q, k = q * 40, k * 40
    out, weights = expect_pair(ctx.call("scaled_dot_product_attention", q, k, v), "scaled_dot_product_attention")
    want_out, want_w = reference.scaled_dot_product_attention(q, k, v)
    hint = guess("Does attention use your stable softmax (max subtracted)?")
    expect_close(weights, want_w, "weights for large scores", **tolerance(torch.float32, 10), hint=hint)
    expect_close(out, want_out, "output for large scores", **tolerance(torch.float32, 10), hint=hint)


@hidden("scaled_dot_product_attention", points=2, group="gradients")
def test_attention_gradients_match(ctx):
    """gradients w.r.t. q, k and v match the reference (through out and weights)"""
    q, k, v = sdpa_inputs(ctx, (2,), 5, 6, 8, 4)
    g_out, g_w = ctx.randn(2, 5, 4), ctx.randn(2, 5, 6)
    result = ctx.call_full("scaled_dot_product_attention", q, k, v,
                           grad={"wrt": [0, 1, 2], "grad_outputs": [g_out, g_w]})
    for what, value in zip(("attention output", "attention weights"),
                           expect_pair(result.value, "scaled_dot_product_attention")):
        expect_tensor(value, f"{what} for float64 inputs", dtype=torch.float64)
    expect_no_backward_error(result, "scaled_dot_product_attention")
    want = grads_of(reference.scaled_dot_product_attention, (q, k, v), (g_out, g_w))
    for name, got, expected in zip("qkv", result.input_grads, want):
        expect_close(got, expected, f"d loss / d {name}", **tolerance(torch.float64),
                     hint=guess("Is part of the computation detached, or computed outside torch (numpy, .item())?"))


@hidden("scaled_dot_product_attention", points=1, group="hygiene")
def test_attention_keeps_dtype_device_and_inputs(ctx):
    """keeps dtype and device, leaves q, k, v unmodified"""
    for dtype in FLOATS:
        q, k, v = sdpa_inputs(ctx, (2,), 3, 4, 8, 8, dtype=dtype)
        result = ctx.call_full("scaled_dot_product_attention", q, k, v)
        out, weights = expect_pair(result.value, "scaled_dot_product_attention")
        for what, value in (("out", out), ("weights", weights)):
            expect_tensor(value, f"{what} for {dtype_name(dtype)} inputs", dtype=dtype, device=ctx.session.device)
        for name, before, after in zip("qkv", (q, k, v), result.args_after):
            expect_unchanged(before, after, f"input {name}")
