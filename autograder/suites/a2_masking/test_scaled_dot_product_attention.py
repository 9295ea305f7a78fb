"""scaled_dot_product_attention(q, k, v, mask=None): masked_softmax(q @ k^T / sqrt(d_k), mask) @ v, and the weights.

Vaswani et al., "Attention Is All You Need" (2017), §3.2.1 (scaled dot-product attention) and §3.2.3 (masking
before the softmax). The mask enters only through the weights, so causality and padding invariance hold exactly, in
the forward pass and in the gradients. Expected: ``reference.scaled_dot_product_attention``, cross-checked against
``F.scaled_dot_product_attention(attn_mask=mask)`` at every query that has a visible key.
"""

from __future__ import annotations

import torch

from autograder import autodiff
from autograder.checks import expect_close, expect_pair, expect_tensor, expect_unchanged, fail, guess, tolerance
from autograder.hidden import hidden
from autograder.known_bugs.a2_masking import attention_suspects
from autograder.suites.a2_masking import inputs
from autograder.suites.a2_masking.expectations import (
    expect_exact_zero,
    expect_finite_gradient,
    expect_finite_then_backward,
    expect_zero_rows,
)
from autograder.suites.a2_masking.inputs import causal, padding, qkv, random_mask, rows_with_visible_key
from autograder.suites.common import FLOATS, dtype_name


def expect_reference(out, weights, q, k, v, mask, what: str, dtype=torch.float64, hints=(None, None),
                     name_bugs: bool = False) -> None:
    """The weights, then the output, equal the reference's; with ``name_bugs`` a known bug is named."""
    want_out, want_w = inputs.attention(q, k, v, mask)
    bad_outs, bad_weights = attention_suspects(q, k, v, mask) if name_bugs else ({}, {})
    expect_close(weights, want_w, f"attention weights {what}", **tolerance(dtype), suspects=bad_weights, hint=hints[0])
    expect_close(out, want_out, f"attention output {what}", **tolerance(dtype), suspects=bad_outs, hint=hints[1])


@hidden("scaled_dot_product_attention", points=1, group="shapes")
def test_attention_shapes_with_masks(ctx):
    """exact shapes for masks of several broadcast shapes, 0-2 batch dims, T_q != T_k, and mask=None"""
    cases = [((), 5, 7, (5, 7)), ((3,), 4, 4, None), ((2, 3), 4, 6, (4, 6)), ((2, 3), 5, 5, (2, 1, 1, 5)),
             ((2, 3), 3, 5, (2, 1, 3, 5)), ((2, 3), 1, 6, (2, 3, 1, 6))]
    for batch, t_q, t_k, mask_shape in cases:
        q, k, v = qkv(ctx, batch, t_q, t_k, 8, 4)
        mask = None if mask_shape is None else random_mask(ctx, *mask_shape)
        what = f"attention(q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}, mask {mask_shape})"
        out, weights = expect_pair(ctx.call("scaled_dot_product_attention", q, k, v, mask), what)
        expect_tensor(out, f"out of {what}", shape=(*batch, t_q, 4),
                      hint="out is weights @ v: (..., T_q, T_k) @ (..., T_k, d_v)")
        expect_tensor(weights, f"weights of {what}", shape=(*batch, t_q, t_k),
                      hint="The mask broadcasts against the scores (..., T_q, T_k); it must not change their shape")
    q, k, v = qkv(ctx, (2,), 3, 4, 8, 8)
    expect_pair(ctx.call("scaled_dot_product_attention", q, k, v),
                "scaled_dot_product_attention(q, k, v) without a mask")


@hidden("scaled_dot_product_attention", points=2, group="numerics")
def test_attention_matches_reference(ctx):
    """out and weights match F.scaled_dot_product_attention(attn_mask=mask) (float64 and float32)"""
    cases = [("a bottom-right causal (T_q, T_k) mask", (2, 3), 4, 6, causal(4, 6)),
             ("a (B, 1, 1, T) padding mask", (2, 3), 5, 5, padding([5, 2], 5)),
             ("a causal & padding (B, 1, T, T) mask", (2, 3), 5, 5, causal(5, 5) & padding([3, 5], 5)),
             ("a random (B, H, T_q, T_k) mask", (2, 3), 4, 7, None)]
    for name, batch, t_q, t_k, mask in cases:
        mask = random_mask(ctx, *batch, t_q, t_k) if mask is None else mask
        q, k, v = qkv(ctx, batch, t_q, t_k, 8, 6)
        out, weights = expect_pair(ctx.call("scaled_dot_product_attention", q, k, v, mask), f"attention with {name}")
        expect_tensor(out, "attention output for float64 inputs", dtype=torch.float64)
        expect_reference(out, weights, q, k, v, mask, f"with {name}", name_bugs=True,
                         hints=(guess("weights = masked_softmax(q @ k.transpose(-2, -1) / sqrt(d_k), mask)"),
                                guess("out = weights @ v")))
    q, k, v = qkv(ctx, (4,), 6, 6, 16, 16, dtype=torch.float32)
    mask = causal(6, 6)
    out, weights = expect_pair(ctx.call("scaled_dot_product_attention", q, k, v, mask), "float32 attention")
    expect_reference(out, weights, q, k, v, mask, "for float32 inputs with a causal mask", torch.float32)


@hidden("scaled_dot_product_attention", points=1, group="properties")
def test_attention_is_causal(ctx):
    """with a causal mask, changing (even huge) future keys and values leaves earlier outputs unchanged"""
    q, k, v = qkv(ctx, (2, 2), 6, 6, 8, 4)
    mask = causal(6, 6)
    out, _ = expect_pair(ctx.call("scaled_dot_product_attention", q, k, v, mask), "causal attention")
    out = expect_tensor(out, "causal attention output", shape=(2, 2, 6, 4))
    t = ctx.randint(0, 5)
    k2, v2 = k.clone(), v.clone()
    k2[..., t + 1:, :] = ctx.randn(2, 2, 5 - t, 8, scale=1000.0)  # scores in the thousands, all of them blocked
    v2[..., t + 1:, :] = ctx.randn(2, 2, 5 - t, 4, scale=1000.0)
    hint = ("The future leaks into the past. Block the scores before the softmax, and take the maximum over the "
            "visible scores only (after masked_fill), so that a huge blocked score changes nothing")
    # then the same keys a thousand times larger: a maximum taken over blocked scores of a few hundred still leaves
    # exp(visible - max) above float64's underflow (about exp(-745)), scores in the millions do not
    for k_future in (k2, torch.cat([k2[..., :t + 1, :], 1000.0 * k2[..., t + 1:, :]], dim=-2)):
        result, _ = expect_pair(ctx.call("scaled_dot_product_attention", q, k_future, v2, mask), "causal attention")
        out2 = expect_tensor(result, "causal attention output", shape=(2, 2, 6, 4))
        if torch.isnan(out2[..., :t + 1, :]).any():
            fail(f"after changing keys and values after position {t} to huge values, outputs up to {t} became NaN",
                 hint)
        want = torch.cat([out[..., :t + 1, :], out2[..., t + 1:, :]], dim=-2)  # unchanged up to t; anything after t
        expect_close(result, want, f"the output after changing the keys and values after position {t} "
                     f"(positions <= {t} must not change)", **tolerance(torch.float64), hint=hint)


@hidden("scaled_dot_product_attention", points=1, group="properties")
def test_attention_padding_invariance(ctx):
    """changing the padded keys and values changes no output; their weights are exactly 0"""
    lengths = [5, 2, 4]
    mask = padding(lengths, 5)
    q, k, v = qkv(ctx, (3, 2), 5, 5, 8, 4)
    out, weights = expect_pair(ctx.call("scaled_dot_product_attention", q, k, v, mask), "attention with a padding mask")
    expect_exact_zero(weights, ~mask, "the attention weight of a padded key",
                      guess("Pass the mask to masked_softmax: True = may attend, and the (B, 1, 1, T) mask blocks "
                            "keys"))
    k2, v2 = k.clone(), v.clone()
    for b, n in enumerate(lengths):
        k2[b, :, n:] = ctx.randn(2, 5 - n, 8, scale=10.0)
        v2[b, :, n:] = ctx.randn(2, 5 - n, 4, scale=10.0)
    out2, _ = expect_pair(ctx.call("scaled_dot_product_attention", q, k2, v2, mask), "attention with a padding mask")
    expect_close(out2, expect_tensor(out, "attention output", shape=(3, 2, 5, 4)),
                 "attention output after changing the padded keys and values", **tolerance(torch.float64),
                 hint="Padding masks keys: no query may take anything from a padded position")


@hidden("scaled_dot_product_attention", points=1, group="properties")
def test_attention_fully_masked_query(ctx):
    """a query with no visible key gets zero weights and a zero output; the other queries are unaffected"""
    q, k, v = qkv(ctx, (2, 2), 5, 6, 8, 4)
    mask = random_mask(ctx, 2, 1, 5, 6)
    mask[0, 0, 3] = False
    mask[1] = False  # a whole sequence without visible keys (length 0)
    out, weights = expect_pair(ctx.call("scaled_dot_product_attention", q, k, v, mask), "attention")
    empty = ~rows_with_visible_key(mask, (2, 2, 5, 6))
    expect_zero_rows(weights, empty, "attention weights", n_keys=6)
    expect_zero_rows(out, empty, "attention output", n_keys=6)
    expect_reference(out, weights, q, k, v, mask, "with fully masked queries")


@hidden("scaled_dot_product_attention", points=1, group="gradients")
def test_attention_gradients_match(ctx):
    """gradients w.r.t. q, k and v match the reference, finite with a fully masked query"""
    q, k, v = qkv(ctx, (2, 2), 5, 6, 8, 4)
    mask = causal(5, 6) & padding([6, 4], 6)
    mask = mask.expand(2, 2, 5, 6).clone()
    mask[1, 1, 2] = False  # one query with no visible key
    g_out, g_w = ctx.randn(2, 2, 5, 4), ctx.randn(2, 2, 5, 6)
    result = ctx.call_full("scaled_dot_product_attention", q, k, v, mask,
                           grad={"wrt": [0, 1, 2], "grad_outputs": [g_out, g_w]})
    outputs = dict(zip(("attention output", "attention weights"), expect_pair(result.value, "attention")))
    for what, value in outputs.items():
        expect_tensor(value, f"{what} for float64 inputs", dtype=torch.float64)
    expect_finite_then_backward(result, "scaled_dot_product_attention", outputs,
                                ~rows_with_visible_key(mask, mask.shape))
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    autodiff.backward(list(inputs.attention(*leaves, mask)), [g_out, g_w])
    for name, got, leaf in zip("qkv", result.input_grads, leaves):
        expect_finite_gradient(got, f"d loss / d {name}")
        expect_close(got, leaf.grad, f"d loss / d {name}", **tolerance(torch.float64),
                     hint=guess("Is part of the computation detached, or computed outside torch (numpy, .item())?"))


@hidden("scaled_dot_product_attention", points=1, group="gradients")
def test_attention_future_gradient_is_exactly_zero(ctx):
    """with a causal mask, the gradient of output t w.r.t. keys and values after t is exactly 0"""
    q, k, v = qkv(ctx, (2, 3), 6, 6, 8, 4)
    mask = causal(6, 6)
    hint = guess("Blocked keys must have no influence at all, to the last bit: take the maximum after masked_fill "
                 "(over visible scores only), and block the scores before exponentiating")
    for t in (0, ctx.randint(1, 5)):
        g_out = torch.zeros(2, 3, 6, 4, dtype=torch.float64)
        g_out[..., t, :] = ctx.randn(2, 3, 4)  # only output t carries a gradient
        result = ctx.call_full("scaled_dot_product_attention", q, k, v, mask,
                               grad={"wrt": [1, 2], "grad_outputs": [g_out, None]})
        out, _ = expect_pair(result.value, "scaled_dot_product_attention")
        expect_finite_then_backward(result, "scaled_dot_product_attention", {"causal attention output": out})
        future = torch.arange(6).unsqueeze(-1) > t  # (T_k, 1): key positions after t
        for name, grad in zip("kv", result.input_grads):
            grad = expect_finite_gradient(grad, f"d out[{t}] / d {name}")
            expect_exact_zero(grad, future, f"d out[{t}] / d {name} at a position after {t}", hint)
            if name == "v" and not grad[..., : t + 1, :].abs().sum() > 0:  # d out[t] / d v[j] = weights[t, j] * g
                fail(f"d out[{t}] / d v is zero at every position, also at positions <= {t}",
                     guess("Is the computation detached (.detach(), .data, no_grad)?"))


@hidden("scaled_dot_product_attention", points=1, group="hygiene")
def test_attention_keeps_dtype_device_and_inputs(ctx):
    """keeps dtype and device, leaves q, k, v and the mask unmodified; mask=None is plain attention"""
    for dtype in FLOATS:
        q, k, v = qkv(ctx, (2,), 3, 4, 8, 8, dtype=dtype)
        mask = random_mask(ctx, 3, 4)
        result = ctx.call_full("scaled_dot_product_attention", q, k, v, mask)
        out, weights = expect_pair(result.value, "scaled_dot_product_attention")
        for what, value in (("out", out), ("weights", weights)):
            expect_tensor(value, f"{what} for {dtype_name(dtype)} inputs", dtype=dtype, device=ctx.session.device)
        for name, before, after in zip(("q", "k", "v", "mask"), (q, k, v, mask), result.args_after):
            expect_unchanged(before, after, f"input {name}")
    q, k, v = qkv(ctx, (2,), 4, 5, 8, 6)
    out, weights = expect_pair(ctx.call("scaled_dot_product_attention", q, k, v),
                               "scaled_dot_product_attention(q, k, v)")
    expect_reference(out, weights, q, k, v, None, "with mask=None", hints=("Without a mask, every key is visible",) * 2)
