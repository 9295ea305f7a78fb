"""linear_attention(q, k, v, eps=1e-6): causal linear attention with phi(x) = elu(x) + 1, in its parallel form.

Katharopoulos et al., "Transformers are RNNs" (2020): out_i = phi(q_i)^T S_i / (phi(q_i)^T z_i
+ eps) with the prefix sums S_i = sum_{j<=i} phi(k_j) v_j^T and z_i = sum_{j<=i} phi(k_j). Expected:
``reference.linear_attention``, written with the T x T matrix of similarities (another summation order than a
cumsum). Any form is accepted here; the memory limit is the recurrent form's (``test_recurrent.py``).
"""

from __future__ import annotations

import torch

from autograder import reference
from autograder.checks import expect_close, expect_tensor, fail, guess, tolerance
from autograder.hidden import hidden
from autograder.known_bugs.a7_fast_weights import linear_suspects
from autograder.suites.a7_fast_weights.inputs import FLOAT32_TOL, expect_input_gradients, plain, qkv, wire
from autograder.suites.common import expect_deterministic, expect_keeps_dtype_device_input

HINT = "out_i = phi(q_i) . S_i / (phi(q_i) . z_i + eps) with phi = F.elu(x) + 1 and sums over j <= i (cumsum)"


@hidden("linear_attention", points=1, group="shapes")
def test_linear_attention_shapes(ctx):
    """returns (..., T, d_v) for 0 to 2 batch dimensions and d_v != d_k"""
    for batch, T, d_k, d_v in [((), 5, 4, 3), ((2,), 6, 3, 5), ((2, 3), 4, 8, 8), ((1, 2), 1, 2, 3)]:
        q, k, v = qkv(ctx, batch, T, d_k, d_v)
        expect_tensor(ctx.call("linear_attention", q, k, v),
                      f"linear_attention(q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)})",
                      shape=(*batch, T, d_v), hint="out_i = phi(q_i)^T S_i / ...: one d_v vector per query")


@hidden("linear_attention", points=3, group="numerics")
def test_linear_attention_matches_reference(ctx):
    """matches the definition with phi = elu + 1 and inclusive prefix sums (float64, and float32)"""
    for batch, T, d_k, d_v in [((2, 3), 7, 4, 5), ((3,), 12, 8, 2)]:
        q, k, v = qkv(ctx, batch, T, d_k, d_v)
        expect_close(ctx.call("linear_attention", q, k, v), reference.linear_attention(q, k, v),
                     f"linear_attention for q {tuple(q.shape)} (float64)", **tolerance(torch.float64, 10),
                     suspects=linear_suspects(q, k, v), hint=HINT)
    q, k, v = qkv(ctx, (2, 2), 9, 4, 4)
    got = ctx.call("linear_attention", *(t.float() for t in (q, k, v)))
    expect_close(got, reference.linear_attention(q.float(), k.float(), v.float()), "linear_attention in float32",
                 **FLOAT32_TOL, suspects=linear_suspects(q, k, v), hint=HINT)


@hidden("linear_attention", points=1, group="numerics")
def test_linear_attention_eps_after_the_dot_product(ctx):
    """eps is the argument's and is added to phi(q_i) . z_i, after the dot product (checked with eps = 0.5)"""
    q, k, v = qkv(ctx, (2,), 6, 4, 3)
    for eps in (0.5, 1e-3):
        expect_close(ctx.call("linear_attention", q, k, v, eps=eps), reference.linear_attention(q, k, v, eps),
                     f"linear_attention with eps={eps}", **tolerance(torch.float64, 10),
                     suspects=linear_suspects(q, k, v, eps),
                     hint="The denominator is (phi(q_i) * z_i).sum(-1) + eps, with the eps passed in")


@hidden("linear_attention", points=2, group="properties")
def test_linear_attention_is_causal(ctx):
    """changing (even huge) keys and values after position t leaves outputs 0..t unchanged"""
    q, k, v = qkv(ctx, (2, 2), 8, 4, 3)
    before = plain(ctx.call("linear_attention", q, k, v))
    for t in (0, 3, 6):
        k2, v2 = k.clone(), v.clone()
        k2[..., t + 1:, :] = ctx.randn(2, 2, 7 - t, 4, scale=5.0)
        v2[..., t + 1:, :] = ctx.randn(2, 2, 7 - t, 3, scale=100.0)
        after = ctx.call("linear_attention", q, k2, v2)
        expect_tensor(after, "linear_attention", shape=before.shape)
        expect_close(wire(plain(after)[..., : t + 1, :]), before[..., : t + 1, :],
                     f"outputs 0..{t} after changing the keys and values after position {t}",
                     **tolerance(torch.float64),
                     hint="Query i may read keys and values j <= i only: prefix sums (cumsum), not a sum over all T")
    if torch.allclose(plain(after), before):
        fail("linear_attention gave the same outputs after the keys and values changed",
             guess("Are k and v used at all?"))


@hidden("linear_attention", points=2, group="gradients")
def test_linear_attention_gradients_match(ctx):
    """gradients w.r.t. q, k and v match the reference's"""
    q, k, v = qkv(ctx, (2, 2), 6, 4, 3)
    g_out = ctx.randn(2, 2, 6, 3)
    expect_input_gradients(ctx, "linear_attention", (q, k, v), tuple("qkv"), reference.linear_attention, g_out,
                           "part of the computation")


@hidden("linear_attention", points=1, group="hygiene")
def test_linear_attention_keeps_dtype_device_and_inputs(ctx):
    """keeps dtype and device, leaves q, k and v unmodified, is deterministic"""
    for dtype in (torch.float32, torch.float64):
        q, k, v = qkv(ctx, (2,), 5, 4, 3, dtype=dtype)
        result = ctx.call_full("linear_attention", q, k, v)
        expect_keeps_dtype_device_input(ctx, result, q, "linear_attention", dtype, "q")
        for i, name in ((1, "k"), (2, "v")):
            expect_keeps_dtype_device_input(ctx, result, (q, k, v)[i], "linear_attention", dtype, name, arg=i)
        expect_deterministic(ctx.call("linear_attention", q, k, v), result, "linear_attention", eval_mode=False)
