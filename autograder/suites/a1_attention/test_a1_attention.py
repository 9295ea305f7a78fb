"""Hidden suite for a1_attention: softmax, scaled dot-product attention, heads, multi-head attention.

Oracles are PyTorch built-ins evaluated in float64 in the grader's process
(``torch.softmax``, ``F.scaled_dot_product_attention``, ``nn.MultiheadAttention`` with
copied weights). Reference: Vaswani et al., "Attention Is All You Need" (2017), §3.2.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from autograder.checks import (guess, expect_finite, expect_no_backward_error, expect_close, expect_equal, expect_pair, expect_tensor, expect_unchanged, fail,
                               tolerance)
from autograder.session import StudentRaised
from autograder.suites.common import load_weights
from autograder.hidden import hidden
from autograder.wire import WireTensor


FLOATS = (torch.float32, torch.float64)


# --- oracles and known-wrong variants (for "your result matches ..." hints) ----------

def oracle_attention(q, k, v, scale=None):
    q, k, v = (t.to(torch.float64) for t in (q, k, v))
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    weights = torch.softmax(q @ k.transpose(-2, -1) * scale, dim=-1)
    return F.scaled_dot_product_attention(q, k, v, scale=scale), weights


def attention_suspects(q, k, v) -> tuple[dict, dict]:
    """Outputs and weights of plausible wrong attentions, keyed by what the bug is."""
    d_k, d_v = q.shape[-1], v.shape[-1]
    q64, k64, v64 = (t.to(torch.float64) for t in (q, k, v))
    scores = q64 @ k64.transpose(-2, -1)
    variants = {
        "attention without the 1/sqrt(d_k) scale": torch.softmax(scores, -1),
        "attention scaled by 1/d_k instead of 1/sqrt(d_k)": torch.softmax(scores / d_k, -1),
        "attention scaled by sqrt(d_k) (multiplied, not divided)": torch.softmax(scores * math.sqrt(d_k), -1),
        "a softmax over the query axis (dim=-2) instead of the key axis (dim=-1)": torch.softmax(scores / math.sqrt(d_k), -2),
    }
    if d_v != d_k:
        variants["attention scaled by 1/sqrt(d_v) instead of 1/sqrt(d_k)"] = torch.softmax(scores / math.sqrt(d_v), -1)
    outs = {bug: w @ v64 for bug, w in variants.items()}
    return outs, variants


def sdpa_inputs(ctx, batch=(2, 3), t_q=5, t_k=7, d_k=8, d_v=6, dtype=torch.float64):
    return ctx.randn(*batch, t_q, d_k, dtype=dtype), ctx.randn(*batch, t_k, d_k, dtype=dtype), ctx.randn(*batch, t_k, d_v, dtype=dtype)


# --- softmax ---------------------------------------------------------------------------

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
            want = torch.softmax(x.double(), dim=dim)
            suspects = {f"a softmax over dim={d} (that is, dim={d + x.dim()}) instead of dim={dim}": torch.softmax(x.double(), dim=d)
                        for d in range(-x.dim(), 0) if d != (dim if dim < 0 else dim - x.dim())}
            suspects["exp(x) / exp(x).sum() over the whole tensor, not along dim"] = x.double().exp() / x.double().exp().sum()
            what = f"softmax(x, dim={dim}) in {str(dtype)[6:]}"
            got = ctx.call("softmax", x, dim=dim)
            expect_tensor(got, what, dtype=dtype)
            expect_close(got, want, what, **tolerance(dtype), suspects=suspects)
    x = ctx.randn(3, 4, 10, scale=3.0)
    default = "The default must be dim=-1 (the last dimension): def softmax(x, dim=-1)"
    expect_close(ctx.call("softmax", x), torch.softmax(x, dim=-1), "softmax(x) without a dim argument", **tolerance(torch.float64),
                 suspects={f"a softmax over dim={d}. {default}": torch.softmax(x, dim=d) for d in (0, 1)}, hint=default)


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
        worst = (sums - 1).abs().max().item()
        if worst > 1e-9:
            fail(f"softmax(x, dim={dim}) sums to {sums.reshape(-1)[(sums - 1).abs().reshape(-1).argmax()].item():.6g} along dim, not 1",
                 f"Is the sum taken over dim={dim}, with keepdim=True?")


@hidden("softmax", points=2, group="properties")
def test_softmax_is_stable_for_large_inputs(ctx):
    """stays finite and exact for x + 1000, x - 1000 and rows of very different scales (float32)"""
    x = ctx.randn(4, 16, dtype=torch.float32)
    scales = torch.tensor([1e-3, 1.0, 1e2, 1e4], dtype=torch.float32).unsqueeze(-1)
    cases = {"softmax(x + 1000)": x + 1000, "softmax(x - 1000)": x - 1000, "softmax(rows scaled by 1e-3 .. 1e4)": x * scales}
    for what, inp in cases.items():
        expect_close(ctx.call("softmax", inp, dim=-1), torch.softmax(inp.double(), -1), what,
                     **tolerance(torch.float32), hint="Subtract the maximum along dim (keepdim=True) before exp")


@hidden("softmax", points=1, group="gradients")
def test_softmax_gradient_matches(ctx):
    """gradient w.r.t. x matches torch.softmax's"""
    x, g = ctx.randn(3, 7), ctx.randn(3, 7)
    result = ctx.call_full("softmax", x, dim=-1, grad={"wrt": [0], "grad_outputs": [g]})
    expect_tensor(result.value, "softmax(x)", shape=x.shape, dtype=x.dtype)
    expect_no_backward_error(result, "softmax")
    x64 = x.clone().requires_grad_(True)
    torch.softmax(x64, -1).backward(g)
    expect_close(result.input_grads[0], x64.grad, "d softmax / d x", **tolerance(torch.float64),
                 hint=guess("Is part of the computation detached (.detach(), .data, .item(), numpy)?"))


@hidden("softmax", points=1, group="hygiene")
def test_softmax_keeps_dtype_device_and_input(ctx):
    """keeps dtype and device, leaves its input unmodified, is deterministic"""
    for dtype in FLOATS:
        x = ctx.randn(3, 8, dtype=dtype)
        first = ctx.call_full("softmax", x, dim=-1)
        expect_tensor(first.value, f"softmax of a {str(dtype)[6:]} input", dtype=dtype, device=ctx.session.device)
        expect_unchanged(x, first.args_after[0], "softmax's input x")
        expect_equal(ctx.call("softmax", x, dim=-1), first.value.tensor, "a second softmax call on the same input",
                     hint="The result should not depend on hidden state")


# --- scaled_dot_product_attention -------------------------------------------------------

@hidden("scaled_dot_product_attention", points=2, group="shapes")
def test_attention_shapes(ctx):
    """returns (out, weights) with exact shapes: T_q != T_k, d_v != d_k, 0-2 batch dims"""
    for batch, t_q, t_k, d_k, d_v in [((), 5, 7, 8, 6), ((3,), 4, 4, 16, 16), ((2, 3), 1, 9, 4, 12), ((2, 3), 6, 2, 8, 3)]:
        q, k, v = sdpa_inputs(ctx, batch, t_q, t_k, d_k, d_v)
        what = f"attention(q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)})"
        out, weights = expect_pair(ctx.call("scaled_dot_product_attention", q, k, v), what)
        _expect_attention_layout(out, weights, what, batch, t_q, t_k, d_v)
        expect_tensor(out, f"out of {what}", shape=(*batch, t_q, d_v), hint="out is weights @ v: (..., T_q, T_k) @ (..., T_k, d_v)")
        expect_tensor(weights, f"weights of {what}", shape=(*batch, t_q, t_k), hint="weights are softmax(q @ k^T / sqrt(d_k)): (..., T_q, T_k)")


def _expect_attention_layout(out, weights, what, batch, t_q, t_k, d_v) -> None:
    """Name two layout slips that a shape mismatch alone does not explain."""
    shape = lambda value: tuple(value.shape) if isinstance(value, WireTensor) else None  # noqa: E731
    want_out, want_w = (*batch, t_q, d_v), (*batch, t_q, t_k)
    if want_out != want_w and shape(out) == want_w and shape(weights) == want_out:
        fail(f"{what} returned a first tensor of shape {want_w} (the weights' shape) and a second of shape {want_out} (the output's)",
             "Return (out, weights) in that order")
    if t_q != t_k and shape(weights) == (*batch, t_k, t_q):
        fail(f"weights of {what} have shape {(*batch, t_k, t_q)}, that is (..., T_k, T_q), expected (..., T_q, T_k) = {want_w}",
             "The weights are transposed: return softmax(q @ k^T / sqrt(d_k)) as it is, one row per query")


@hidden("scaled_dot_product_attention", points=3, group="numerics")
def test_attention_matches_reference(ctx):
    """out and weights match F.scaled_dot_product_attention in float64"""
    q, k, v = sdpa_inputs(ctx, (2, 3), 5, 7, 8, 6)
    out, weights = expect_pair(ctx.call("scaled_dot_product_attention", q, k, v), "scaled_dot_product_attention")
    want_out, want_w = oracle_attention(q, k, v)
    bad_outs, bad_weights = attention_suspects(q, k, v)
    for what, value in (("attention weights", weights), ("attention output", out)):
        expect_tensor(value, f"{what} for float64 inputs", dtype=torch.float64)
    expect_close(weights, want_w, "attention weights", **tolerance(torch.float64), suspects=bad_weights,
                 hint="weights = softmax(q @ k.transpose(-2, -1) / sqrt(d_k), dim=-1)")
    expect_close(out, want_out, "attention output", **tolerance(torch.float64), suspects=bad_outs,
                 hint="out = weights @ v")


@hidden("scaled_dot_product_attention", points=1, group="numerics")
def test_attention_matches_reference_float32(ctx):
    """matches the float64 reference within float32 tolerance"""
    q, k, v = sdpa_inputs(ctx, (4,), 6, 6, 16, 16, dtype=torch.float32)
    out, weights = expect_pair(ctx.call("scaled_dot_product_attention", q, k, v), "scaled_dot_product_attention")
    want_out, want_w = oracle_attention(q, k, v)
    bad_outs, bad_weights = attention_suspects(q, k, v)
    bad_weights["weights transposed: (..., T_k, T_q) instead of (..., T_q, T_k)"] = want_w.transpose(-2, -1)
    expect_close(weights, want_w, "float32 attention weights", **tolerance(torch.float32), suspects=bad_weights)
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
             "Is the softmax over the last dimension (the keys)?")


@hidden("scaled_dot_product_attention", points=1, group="properties")
def test_attention_is_permutation_equivariant(ctx):
    """permuting keys with values changes nothing; permuting queries permutes the output"""
    q, k, v = sdpa_inputs(ctx, (2,), 5, 8, 4, 4)
    out, _ = expect_pair(ctx.call("scaled_dot_product_attention", q, k, v), "scaled_dot_product_attention")
    out = expect_tensor(out, "attention output", shape=(2, 5, 4), dtype=torch.float64)
    pk, pq = ctx.permutation(8), ctx.permutation(5)
    out_k, _ = ctx.call("scaled_dot_product_attention", q, k[:, pk], v[:, pk])
    expect_close(out_k, out, "output after permuting keys and values together", **tolerance(torch.float64),
                 hint="Keys and values must be paired by position; the output is a weighted set, order-free")
    out_q, _ = ctx.call("scaled_dot_product_attention", q[:, pq], k, v)
    expect_close(out_q, out[:, pq], "output after permuting the queries", **tolerance(torch.float64),
                 hint="Each query's output must depend only on that query")


@hidden("scaled_dot_product_attention", points=1, group="properties")
def test_attention_is_stable_for_large_scores(ctx):
    """stays finite and correct when scores are in the thousands (float32)"""
    q, k, v = sdpa_inputs(ctx, (2,), 4, 6, 8, 8, dtype=torch.float32)
    q, k = q * 40, k * 40
    out, weights = expect_pair(ctx.call("scaled_dot_product_attention", q, k, v), "scaled_dot_product_attention")
    want_out, want_w = oracle_attention(q, k, v)
    hint = guess("Does attention use your stable softmax (max subtracted)?")
    expect_close(weights, want_w, "weights for large scores", **tolerance(torch.float32, 10), hint=hint)
    expect_close(out, want_out, "output for large scores", **tolerance(torch.float32, 10), hint=hint)


@hidden("scaled_dot_product_attention", points=2, group="gradients")
def test_attention_gradients_match(ctx):
    """gradients w.r.t. q, k and v match the reference (through out and weights)"""
    q, k, v = sdpa_inputs(ctx, (2,), 5, 6, 8, 4)
    g_out, g_w = ctx.randn(2, 5, 4), ctx.randn(2, 5, 6)
    result = ctx.call_full("scaled_dot_product_attention", q, k, v, grad={"wrt": [0, 1, 2], "grad_outputs": [g_out, g_w]})
    for what, value in zip(("attention output", "attention weights"), expect_pair(result.value, "scaled_dot_product_attention")):
        expect_tensor(value, f"{what} for float64 inputs", dtype=torch.float64)
    expect_no_backward_error(result, "scaled_dot_product_attention")
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    out, w = oracle_attention(*leaves)
    torch.autograd.backward([out, w], [g_out, g_w])
    for name, got, leaf in zip("qkv", result.input_grads, leaves):
        expect_close(got, leaf.grad, f"d loss / d {name}", **tolerance(torch.float64),
                     hint=guess("Is part of the computation detached, or computed outside torch (numpy, .item())?"))


@hidden("scaled_dot_product_attention", points=1, group="hygiene")
def test_attention_keeps_dtype_device_and_inputs(ctx):
    """keeps dtype and device, leaves q, k, v unmodified"""
    for dtype in FLOATS:
        q, k, v = sdpa_inputs(ctx, (2,), 3, 4, 8, 8, dtype=dtype)
        result = ctx.call_full("scaled_dot_product_attention", q, k, v)
        out, weights = expect_pair(result.value, "scaled_dot_product_attention")
        for what, value in (("out", out), ("weights", weights)):
            expect_tensor(value, f"{what} for {str(dtype)[6:]} inputs", dtype=dtype, device=ctx.session.device)
        for name, before, after in zip("qkv", (q, k, v), result.args_after):
            expect_unchanged(before, after, f"input {name}")


# --- split_heads / merge_heads ----------------------------------------------------------

def reference_split(x, n_heads):
    B, T, d_model = x.shape
    return x.reshape(B, T, n_heads, d_model // n_heads).transpose(1, 2)  # (B, T, D) -> (B, T, H, dh) -> (B, H, T, dh)


def split_suspects(x, n_heads):
    B, T, d_model = x.shape
    d_head = d_model // n_heads
    return {
        "x.reshape(B, H, T, d_head): a reshape without the transpose": x.reshape(B, n_heads, T, d_head),
        "a layout where head h takes every H-th feature (view(B, T, d_head, H)), not a contiguous block":
            x.reshape(B, T, d_head, n_heads).permute(0, 3, 1, 2),
    }


@hidden("split_heads", points=1, group="shapes")
def test_split_heads_shape(ctx):
    """(B, T, d_model) -> (B, H, T, d_head) for several sizes"""
    for B, T, d_model, H in [(2, 5, 12, 3), (1, 1, 8, 8), (3, 4, 16, 1)]:
        expect_tensor(ctx.call("split_heads", ctx.randn(B, T, d_model), H), f"split_heads(x of shape ({B}, {T}, {d_model}), {H})",
                      shape=(B, H, T, d_model // H))


@hidden("split_heads", points=1, group="numerics")
def test_split_heads_layout(ctx):
    """head h holds features h*d_head:(h+1)*d_head of each position"""
    x = ctx.randn(2, 5, 12)
    expect_close(ctx.call("split_heads", x, 3), reference_split(x, 3), "split_heads(x, 3)", atol=0.0, rtol=0.0,
                 suspects=split_suspects(x, 3), hint="Reshape to (B, T, H, d_head), then transpose T and H")


@hidden("split_heads", points=1, group="hygiene")
def test_split_heads_gradient_and_input(ctx):
    """passes gradients straight through and leaves x unmodified"""
    x, g = ctx.randn(2, 3, 8), ctx.randn(2, 2, 3, 4)
    result = ctx.call_full("split_heads", x, 2, grad={"wrt": [0], "grad_outputs": [g]})
    expect_no_backward_error(result, "split_heads")
    expect_equal(result.input_grads[0], g.transpose(1, 2).reshape(2, 3, 8), "d loss / d x through split_heads")
    expect_unchanged(x, result.args_after[0], "split_heads' input x")


@hidden("merge_heads", points=1, group="shapes")
def test_merge_heads_shape(ctx):
    """(B, H, T, d_head) -> (B, T, H * d_head)"""
    for B, H, T, dh in [(2, 3, 5, 4), (1, 8, 1, 1), (3, 1, 4, 16)]:
        expect_tensor(ctx.call("merge_heads", ctx.randn(B, H, T, dh)), f"merge_heads(x of shape ({B}, {H}, {T}, {dh}))",
                      shape=(B, T, H * dh))


@hidden("merge_heads", points=1, group="numerics")
def test_merge_heads_inverts_split(ctx):
    """is the exact inverse of the reference split_heads"""
    x = ctx.randn(2, 5, 12)
    heads = reference_split(x, 3)
    expect_equal(ctx.call("merge_heads", heads), x, "merge_heads(split_heads(x))",
                 hint="Transpose back to (B, T, H, d_head) before reshaping to (B, T, d_model)")


@hidden("merge_heads", points=1, group="hygiene")
def test_merge_heads_gradient_and_input(ctx):
    """passes gradients straight through and leaves its input unmodified"""
    h, g = ctx.randn(2, 2, 3, 4), ctx.randn(2, 3, 8)
    result = ctx.call_full("merge_heads", h, grad={"wrt": [0], "grad_outputs": [g]})
    expect_no_backward_error(result, "merge_heads")
    expect_equal(result.input_grads[0], reference_split(g, 2), "d loss / d x through merge_heads")
    expect_unchanged(h, result.args_after[0], "merge_heads' input")


# --- MultiHeadAttention -----------------------------------------------------------------

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


def build_mha(ctx, d_model, n_heads, bias=True, dtype=torch.float64):
    """The student's module and a float64 nn.MultiheadAttention holding the same weights."""
    module = ctx.construct("MultiHeadAttention", d_model, n_heads, bias=bias)
    expected = {f"{p}.weight": (d_model, d_model) for p in PROJECTIONS}
    if bias:
        expected.update({f"{p}.bias": (d_model,) for p in PROJECTIONS})
    got = {name: tuple(t.shape) for name, t in module.parameters.items()}
    if got != expected:
        extra = sorted(set(got) - set(expected))
        missing = sorted(set(expected) - set(got))
        wrong = sorted(n for n in set(got) & set(expected) if got[n] != expected[n])
        fail(f"MultiHeadAttention({d_model}, {n_heads}, bias={bias}) has unexpected parameters: "
             f"missing {missing or 'none'}, extra {extra or 'none'}, wrong shape {wrong or 'none'}",
             f"Expected four nn.Linear({d_model}, {d_model}, bias={bias}) named q_proj, k_proj, v_proj, out_proj")
    state = {name: ctx.randn(*shape, scale=1 / math.sqrt(d_model)) for name, shape in expected.items()}
    module.set_mode(train=False, dtype=dtype)
    load_weights(module, {k: v.to(dtype) for k, v in state.items()})
    oracle = nn.MultiheadAttention(d_model, n_heads, bias=bias, batch_first=True, dtype=torch.float64).eval()
    with torch.no_grad():
        oracle.in_proj_weight.copy_(torch.cat([state[f"{p}.weight"] for p in PROJECTIONS[:3]]))
        oracle.out_proj.weight.copy_(state["out_proj.weight"])
        if bias:
            oracle.in_proj_bias.copy_(torch.cat([state[f"{p}.bias"] for p in PROJECTIONS[:3]]))
            oracle.out_proj.bias.copy_(state["out_proj.bias"])
    return module, oracle, state


def mha_suspects(x, state, n_heads):
    """Outputs of plausible wrong multi-head attentions with the same weights."""
    def linear(name, t):
        return t @ state[f"{name}.weight"].T + state.get(f"{name}.bias", 0)

    B, T, D = x.shape
    q, k, v = (linear(p, x) for p in PROJECTIONS[:3])
    split = lambda t: t.reshape(B, T, n_heads, D // n_heads).transpose(1, 2)  # noqa: E731
    merge = lambda t: t.transpose(1, 2).reshape(B, T, D)  # noqa: E731
    heads, _ = oracle_attention(split(q), split(k), split(v))
    no_split, _ = oracle_attention(q, k, v)
    wrong_scale, _ = oracle_attention(split(q), split(k), split(v), scale=1 / math.sqrt(D))
    suspects = {
        "multi-head attention without the output projection out_proj": merge(heads),
        "a single head over all of d_model (heads never split)": linear("out_proj", no_split),
        "heads scaled by 1/sqrt(d_model) instead of 1/sqrt(d_head)": linear("out_proj", merge(wrong_scale)),
        "heads merged by a reshape without the transpose": linear("out_proj", heads.reshape(B, T, D)),
        "values projected with k_proj instead of v_proj": linear("out_proj", merge(oracle_attention(split(q), split(k), split(k))[0])),
        "keys projected with q_proj instead of k_proj": linear("out_proj", merge(oracle_attention(split(q), split(q), split(v))[0])),
    }
    if D // n_heads != n_heads:
        swapped = lambda t: t.reshape(B, T, D // n_heads, n_heads).transpose(1, 2)  # noqa: E731
        out, _ = oracle_attention(swapped(q), swapped(k), swapped(v))
        suspects["d_model // n_heads heads of size n_heads (n_heads and d_head swapped in split_heads)"] = linear("out_proj", merge(out))
    return suspects


@hidden("MultiHeadAttention", points=1, group="shapes")
def test_mha_structure(ctx):
    """has q_proj, k_proj, v_proj, out_proj as nn.Linear(d_model, d_model), biases only when bias=True"""
    for d_model, n_heads, bias in [(12, 3, True), (8, 2, False)]:
        module = ctx.construct("MultiHeadAttention", d_model, n_heads, bias=bias)
        subs = module.submodules
        for p in PROJECTIONS:
            if p not in subs or subs[p]["type"] != "torch.nn.modules.linear.Linear":
                fail(f"MultiHeadAttention has no nn.Linear submodule named {p}",
                     f"Create self.{p} = nn.Linear(d_model, d_model, bias=bias) in __init__")
        build_mha(ctx, d_model, n_heads, bias)
    expect_divisibility_error(ctx, 21, 4)


def expect_divisibility_error(ctx, d_model: int, n_heads: int) -> None:
    """The notebook's rule: a d_model not divisible by n_heads raises ValueError with a message giving both numbers."""
    what = f"MultiHeadAttention({d_model}, {n_heads})"
    hint = ("In __init__, when d_model % n_heads != 0, raise ValueError with both numbers in the message, "
            "e.g. f\"d_model={d_model} is not divisible by n_heads={n_heads}\"")
    try:
        ctx.call("MultiHeadAttention", d_model, n_heads)
    except StudentRaised as exc:
        kind, message = exc.error.get("type"), exc.error.get("message") or ""
        if kind != "ValueError":
            fail(f"{what} raised {kind}, expected ValueError ({d_model} is not divisible by {n_heads})", hint)
        missing = [str(n) for n in (d_model, n_heads) if not re.search(rf"(?<!\d){n}(?!\d)", message)]
        if missing:
            fail(f"{what} raised ValueError({message[:80]!r}): the message does not give {' and '.join(missing)}", hint)
        return
    fail(f"{what} did not raise: {d_model} is not divisible by {n_heads}", hint)


@hidden("MultiHeadAttention", points=1, group="shapes")
def test_mha_output_shape(ctx):
    """forward keeps (B, T, d_model) for several sizes"""
    for B, T, d_model, n_heads in [(2, 5, 12, 3), (1, 1, 8, 8), (3, 7, 16, 1)]:
        module, _, _ = build_mha(ctx, d_model, n_heads)
        x = ctx.randn(B, T, d_model)
        expect_tensor(ctx.forward(module, x).value, f"MultiHeadAttention({d_model}, {n_heads}) on x of shape {(B, T, d_model)}",
                      shape=(B, T, d_model))


@hidden("MultiHeadAttention", points=3, group="numerics")
def test_mha_matches_nn_multihead_attention(ctx):
    """matches nn.MultiheadAttention with the same weights (float64)"""
    # (24, 3) first: with d_head != n_heads and d_head**2 != d_model, no two wrong scales or head layouts coincide
    for d_model, n_heads, bias in [(24, 3, True), (16, 4, True), (16, 4, False)]:
        module, oracle, state = build_mha(ctx, d_model, n_heads, bias=bias)
        x = ctx.randn(2, 6, d_model)
        want = oracle(x, x, x, need_weights=False)[0]
        what = f"MultiHeadAttention({d_model}, {n_heads}, bias={bias}) output"
        got = ctx.forward(module, x).value
        expect_tensor(got, f"{what} for a float64 module and input", dtype=torch.float64)
        expect_close(got, want, what, **tolerance(torch.float64), suspects=mha_suspects(x, state, n_heads),
                     hint="Project, split heads, attend per head, merge heads, then apply out_proj")


@hidden("MultiHeadAttention", points=1, group="numerics")
def test_mha_matches_in_float32(ctx):
    """matches the float64 reference within float32 tolerance"""
    module, oracle, _ = build_mha(ctx, 16, 2, dtype=torch.float32)
    x = ctx.randn(3, 5, 16, dtype=torch.float32)
    want = oracle(x.double(), x.double(), x.double(), need_weights=False)[0]
    expect_close(ctx.forward(module, x).value, want, "float32 MultiHeadAttention output", **tolerance(torch.float32, 10))


@hidden("MultiHeadAttention", points=1, group="properties")
def test_mha_is_permutation_equivariant(ctx):
    """without positions, permuting the sequence permutes the output"""
    module, _, _ = build_mha(ctx, 8, 2)
    x, perm = ctx.randn(2, 6, 8), ctx.permutation(6)
    out = expect_tensor(ctx.forward(module, x).value, "MultiHeadAttention output", shape=(2, 6, 8))
    expect_close(ctx.forward(module, x[:, perm]).value, out[:, perm], "output on the permuted sequence",
                 **tolerance(torch.float64), hint="Does something mix positions other than attention?")


@hidden("MultiHeadAttention", points=3, group="gradients")
def test_mha_gradients_match(ctx):
    """gradients w.r.t. the input and every parameter match nn.MultiheadAttention's"""
    module, oracle, _ = build_mha(ctx, 12, 3)
    x, g = ctx.randn(2, 5, 12), ctx.randn(2, 5, 12)
    result = ctx.forward(module, x, grad={"wrt": [0], "grad_outputs": [g]})
    expect_no_backward_error(result, "MultiHeadAttention")
    x64 = x.clone().requires_grad_(True)
    oracle(x64, x64, x64, need_weights=False)[0].backward(g)
    expect_close(result.input_grads[0], x64.grad, "d loss / d x", **tolerance(torch.float64))
    grads = result.param_grads
    w_grads = dict(zip(PROJECTIONS[:3], oracle.in_proj_weight.grad.chunk(3)))
    b_grads = dict(zip(PROJECTIONS[:3], oracle.in_proj_bias.grad.chunk(3)))
    w_grads["out_proj"], b_grads["out_proj"] = oracle.out_proj.weight.grad, oracle.out_proj.bias.grad
    for p in PROJECTIONS:
        for kind, want in (("weight", w_grads[p]), ("bias", b_grads[p])):
            got = grads.get(f"{p}.{kind}")
            if got is None:
                fail(f"{p}.{kind} received no gradient", f"Is {p} used in forward, on a path that is not detached?")
            expect_close(got, want, f"gradient of {p}.{kind}", **tolerance(torch.float64))


@hidden("MultiHeadAttention", points=1, group="hygiene")
def test_mha_keeps_dtype_device_and_input(ctx):
    """keeps dtype and device, leaves x unmodified, is deterministic in eval()"""
    for dtype in FLOATS:
        module, _, _ = build_mha(ctx, 8, 2, dtype=dtype)
        x = ctx.randn(2, 4, 8, dtype=dtype)
        first = ctx.forward(module, x)
        expect_tensor(first.value, f"output for a {str(dtype)[6:]} module and input", dtype=dtype, device=ctx.session.device)
        expect_unchanged(x, first.args_after[0], "the input x")
        expect_equal(ctx.forward(module, x).value, first.value.tensor, "a second forward on the same input",
                     hint="In eval() mode the output must be deterministic")


# --- shared -----------------------------------------------------------------------------

