"""Hidden suite for a2_masking: causal and padding masks, the masked softmax, masked attention.

Oracles are computed in float64 in the grader's process: ``torch.nn.attention.bias.causal_lower_right``
for causal masks, ``torch.softmax`` of ``-inf``-filled scores for the masked softmax,
``F.scaled_dot_product_attention(attn_mask=bool mask)`` for attention, and ``nn.MultiheadAttention``
with copied weights (and its inverted boolean mask) for multi-head attention. PyTorch returns NaN
(or, in recent versions, zeros) for a query with no visible key, so references are compared only
on rows that have a visible key, and fully masked rows are checked separately against the course
convention: zero weights, zero output, finite gradients. The masks the tests pass to attention are
built here, never with the student's ``causal_mask``/``padding_mask``, so one bug does not cascade.
Reference: Vaswani et al., "Attention Is All You Need" (2017), §3.2.3.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.bias import causal_lower_right

from autograder.checks import (guess, expect_no_backward_error, expect_close, expect_pair, expect_tensor, expect_unchanged, fail,
                               tolerance)
from autograder.hidden import hidden
from autograder.suites.common import load_weights
from autograder.wire import WireTensor


FLOATS = (torch.float32, torch.float64)
NEG_INF = float("-inf")



# --- oracles, masks and known-wrong variants ---------------------------------------------

def oracle_causal(t_q: int, t_k: int) -> torch.Tensor:
    return causal_lower_right(t_q, t_k)._materialize()  # bottom-right aligned, True = may attend


def causal_suspects(t_q: int, t_k: int) -> dict:
    right = oracle_causal(t_q, t_k)
    ones = torch.ones(t_q, t_k, dtype=torch.bool)
    suspects = {
        "an inverted mask: True marks the blocked future, but True must mean 'may attend'": ~right,
        "a mask with the diagonal blocked (j < i instead of j <= i: tril(diagonal=-1) or ~triu()); "
        "a token may attend to itself": ones.tril(diagonal=t_k - t_q - 1),
        "the upper triangle (keys j >= i): query i is row i and may attend to keys j <= i": ones.triu(diagonal=t_k - t_q),
    }
    if t_k != t_q:
        suspects["the top-left alignment (j <= i): with T_k > T_q the queries are the LAST T_q positions, "
                 "so query i may attend to keys j <= i + (T_k - T_q)"] = ones.tril()
    return suspects


def oracle_masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The masked softmax in float64; rows with no visible key are zeros (differentiable, finite gradients)."""
    s = scores.to(torch.float64)
    w = torch.softmax(s.masked_fill(~mask, NEG_INF), dim=dim)
    visible = mask.expand(s.shape).any(dim=dim, keepdim=True)
    return torch.where(visible, w, torch.zeros_like(w))


def softmax_suspects(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> dict:
    s = scores.to(torch.float64)
    plain = torch.softmax(s, dim=dim)
    return {
        "a softmax that ignores the mask": plain,
        "an inverted mask (True treated as blocked, the convention of nn.MultiheadAttention); "
        "here True means 'may attend'": oracle_masked_softmax(s, ~mask, dim),
        "weights multiplied by the mask after the softmax, without renormalising: block the scores before "
        "normalising": plain * mask,
        "a masked softmax over the last dimension whatever `dim` is": oracle_masked_softmax(s, mask, -1),
    }


def rows_with_visible_key(mask: torch.Tensor, shape) -> torch.Tensor:
    """(..., T_q, 1): True where the query has at least one visible key."""
    return mask.expand(shape).any(dim=-1, keepdim=True)


def oracle_attention(q, k, v, mask=None):
    """(out, weights) in float64: F.scaled_dot_product_attention for rows with a visible key, zeros elsewhere."""
    q, k, v = (t.to(torch.float64) for t in (q, k, v))
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v), torch.softmax(scores, -1)
    weights = oracle_masked_softmax(scores, mask)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out = torch.where(rows_with_visible_key(mask, scores.shape), out, torch.zeros_like(out))  # older PyTorch: NaN rows
    return out, weights


def differentiable_attention(q, k, v, mask):
    """The same oracle, written so that autograd gives the reference gradients (also for fully masked rows)."""
    weights = oracle_masked_softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), mask)
    return weights @ v, weights


def attention_suspects(q, k, v, mask) -> tuple[dict, dict]:
    q, k, v = (t.to(torch.float64) for t in (q, k, v))
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    weights = softmax_suspects(scores, mask)
    weights.pop("a masked softmax over the last dimension whatever `dim` is")
    return {bug: w @ v for bug, w in weights.items()}, weights


def random_mask(ctx, *shape, p_visible=0.6, keep_first=True) -> torch.Tensor:
    """A random bool mask; with keep_first every row keeps key 0 visible (no fully masked row)."""
    mask = torch.rand(*shape, generator=ctx.generator) < p_visible
    if keep_first:
        mask[..., 0] = True
    return mask


def padding(lengths, t: int) -> torch.Tensor:
    return (torch.arange(t) < torch.as_tensor(lengths).unsqueeze(-1))[:, None, None, :]  # (B, 1, 1, T)


def qkv(ctx, batch=(2, 3), t_q=5, t_k=7, d_k=8, d_v=6, dtype=torch.float64):
    return ctx.randn(*batch, t_q, d_k, dtype=dtype), ctx.randn(*batch, t_k, d_k, dtype=dtype), ctx.randn(*batch, t_k, d_v, dtype=dtype)


def _plain(value, what: str) -> torch.Tensor:
    """A tensor the grader already holds (a slice of a result), or the values of a returned one."""
    return value if isinstance(value, torch.Tensor) else expect_tensor(value, what)


def _expect_finite(value, what: str, hint: str) -> torch.Tensor:
    if value is None:
        fail(f"{what} is None: no gradient reached that input",
             "Is part of the computation detached (.detach(), .data, torch.no_grad()), or computed outside torch?")
    tensor = _plain(value, what)
    bad = ~torch.isfinite(tensor)
    if bad.any():
        first = bad.nonzero()[0].tolist()
        fail(f"{what} contains {int(bad.sum())} non-finite value(s), first {tensor[tuple(first)].item()} at {first}", hint)
    return tensor


def _expect_exact_zero(value, where: torch.Tensor, what: str, hint: str) -> None:
    """``value`` is exactly 0 wherever ``where`` is True."""
    tensor = _plain(value, what)
    bad = (tensor != 0) & where.expand(tensor.shape)
    if bad.any():
        first = bad.nonzero()[0].tolist()
        fail(f"{what} is {tensor[tuple(first)].item():.3g} at {first}, where it must be exactly 0 "
             f"({int(bad.sum())} such entries)", hint)


def _expect_same(again, first, what: str) -> None:
    """Two calls on the same inputs give the same bits (NaN counts as equal to NaN: other tests judge NaN)."""
    a, b = expect_tensor(again, what), expect_tensor(first, what)
    if a.shape != b.shape or not torch.allclose(a, b, rtol=0.0, atol=0.0, equal_nan=True):
        fail(f"{what} gave a different result", "The result should not depend on hidden state or randomness (eval() mode)")


NAN_ROW_HINT = ("A row with no visible key gave NaN: its maximum is -inf and -inf - (-inf) is NaN. Shift such rows by 0 "
                "instead of their maximum, and divide by 1 where the row sum is 0")
UNIFORM_ROW_HINT = ("A row with no visible key gave uniform weights 1/T_k: that is what a large negative number such as "
                    "-1e9 does. Use -inf, and give rows with no visible key all-zero weights")
NAN_GRAD_HINT = ("NaN in the gradient although the forward pass is finite: torch.where(cond, e / total, 0) still "
                 "differentiates e / total at total = 0 (0 / 0), and an additive -inf mask passes that NaN on to the "
                 "scores. Divide by a denominator that is never 0 instead")


def _expect_zero_rows(value, empty_rows: torch.Tensor, what: str, n_keys: int) -> None:
    """Rows flagged in ``empty_rows`` (..., T_q, 1) are all zeros: not NaN, not uniform."""
    tensor = _plain(value, what)
    rows = tensor[empty_rows.expand(tensor.shape)]
    if torch.isnan(rows).any():
        fail(f"{what}: a query with no visible key got NaN", NAN_ROW_HINT)
    if rows.numel() and torch.allclose(rows.to(torch.float64), torch.full_like(rows, 1 / n_keys, dtype=torch.float64), atol=1e-6):
        fail(f"{what}: a query with no visible key got uniform weights 1/{n_keys}", UNIFORM_ROW_HINT)
    if (rows != 0).any():
        fail(f"{what}: a query with no visible key got entries up to {rows.abs().max().item():.3g}, expected all zeros",
             "The convention: no visible key means zero weights and a zero output")


def _expect_mask(value, want: torch.Tensor, what: str, suspects: dict, hint: str | None = None) -> None:
    got = expect_tensor(value, what, shape=want.shape)
    if got.dtype != torch.bool:
        fail(f"{what} has dtype {str(got.dtype).removeprefix('torch.')}, expected bool",
             "Masks are boolean (True = may attend): build it with a comparison, or convert with .bool()")
    if torch.equal(got, want):
        return
    for bug, wrong in suspects.items():
        if wrong.shape == got.shape and torch.equal(got, wrong.bool()):
            fail(f"{what} is wrong at {int((got != want).sum())} of {want.numel()} entries", f"It matches {bug}")
    first = (got != want).nonzero()[0].tolist()
    fail(f"{what} is wrong at {int((got != want).sum())} of {want.numel()} entries, first at {first}: "
         f"got {bool(got[tuple(first)])}, expected {bool(want[tuple(first)])}", hint)


# --- causal_mask ---------------------------------------------------------------------------

@hidden("causal_mask", points=1, group="shapes")
def test_causal_mask_shape_and_dtype(ctx):
    """returns a bool tensor of shape (T_q, T_k), T_k defaulting to T_q"""
    for args in [(1,), (4,), (7,), (3, 7), (1, 5), (4, 4)]:
        t_q, t_k = args[0], args[-1]
        what = f"causal_mask({', '.join(map(str, args))})"
        got = ctx.call("causal_mask", *args)
        if isinstance(got, WireTensor) and got.dtype != "bool":
            fail(f"{what} has dtype {got.dtype}, expected bool",
                 "Masks are boolean (True = may attend): build it with a comparison, or convert with .bool()")
        expect_tensor(got, what, shape=(t_q, t_k))


@hidden("causal_mask", points=1, group="numerics")
def test_causal_mask_matches_reference(ctx):
    """is the lower triangle with its diagonal: query i may attend to keys j <= i (True = may attend)"""
    for t in (6, 2, 1):  # the largest first: for T = 1 several wrong masks coincide
        _expect_mask(ctx.call("causal_mask", t), oracle_causal(t, t), f"causal_mask({t})", causal_suspects(t, t),
                     hint="Query i (row) may attend to key j (column) exactly when j <= i")


@hidden("causal_mask", points=1, group="properties")
def test_causal_mask_keeps_the_diagonal(ctx):
    """the diagonal stays visible: every token may attend to itself"""
    for t in (3, 5):
        got = expect_tensor(ctx.call("causal_mask", t), f"causal_mask({t})", shape=(t, t))
        diagonal = got.to(torch.bool).diagonal()
        if not diagonal.all():
            i = int((~diagonal).nonzero()[0])
            fail(f"causal_mask({t})[{i}, {i}] is False: query {i} may not attend to itself",
                 "The diagonal must stay visible: j <= i, not j < i (tril(), not tril(diagonal=-1))")
    got = expect_tensor(ctx.call("causal_mask", 1), "causal_mask(1)", shape=(1, 1))
    if not got.to(torch.bool).all():
        fail("causal_mask(1) blocks the only key: a single token has nothing but itself to attend to",
             "The diagonal must stay visible: j <= i, not j < i")


@hidden("causal_mask", points=1, group="properties")
def test_causal_mask_bottom_right_alignment(ctx):
    """with T_k > T_q the queries are the last T_q positions (bottom-right alignment)"""
    for t_q, t_k in [(2, 5), (1, 6), (3, 8), (4, 5)]:
        _expect_mask(ctx.call("causal_mask", t_q, t_k), oracle_causal(t_q, t_k), f"causal_mask({t_q}, {t_k})",
                     causal_suspects(t_q, t_k), hint="Query i may attend to key j exactly when j <= i + (T_k - T_q)")


@hidden("causal_mask", points=1, group="hygiene")
def test_causal_mask_default_and_device(ctx):
    """T_k=None means T_q; the mask is created on `device`, needs no gradient"""
    device = ctx.session.device
    for args, kwargs in [((5,), {"device": device}), ((3, 6), {"device": device}), ((4, None), {})]:
        what = f"causal_mask({', '.join(map(str, args))}{', device=' + repr(device) if kwargs else ''})"
        value = ctx.call("causal_mask", *args, **kwargs)
        t_q, t_k = args[0], args[1] if len(args) > 1 and args[1] is not None else args[0]
        expect_tensor(value, what, shape=(t_q, t_k), device=device if kwargs else None,
                      hint="Pass device=device to torch.arange/torch.ones; never call .cuda()/.cpu()")
        if value.requires_grad:
            fail(f"{what} requires grad", "A mask is a constant: build it from integer positions or a bool tensor")
        _expect_mask(value, oracle_causal(t_q, t_k), what, causal_suspects(t_q, t_k))


# --- padding_mask ---------------------------------------------------------------------------

@hidden("padding_mask", points=1, group="shapes")
def test_padding_mask_shape(ctx):
    """returns a bool tensor of shape (B, 1, 1, T): it masks keys and broadcasts over heads and queries"""
    for lengths, t in [([3, 1, 4], 5), ([2], 2), ([0, 6], 6)]:
        what = f"padding_mask(lengths of {len(lengths)} sequences, {t})"
        got = ctx.call("padding_mask", torch.tensor(lengths), t)
        b = len(lengths)
        if isinstance(got, WireTensor) and tuple(got.shape) in {(b, 1, t, 1), (b, t, 1)} and t != 1:
            fail(f"{what} has shape {tuple(got.shape)}: it masks queries", "Padding masks keys: the shape is (B, 1, 1, T)")
        if isinstance(got, WireTensor) and tuple(got.shape) == (b, t):
            fail(f"{what} has shape {(b, t)}, expected (B, 1, 1, T) = {(b, 1, 1, t)}",
                 "Add the head and query dimensions (mask[:, None, None, :]) so it broadcasts against (B, H, T_q, T_k)")
        got = expect_tensor(got, what, shape=(b, 1, 1, t))
        if got.dtype != torch.bool:
            fail(f"{what} has dtype {str(got.dtype).removeprefix('torch.')}, expected bool",
                 "Masks are boolean (True = may attend): build it with a comparison, or convert with .bool()")


@hidden("padding_mask", points=1, group="numerics")
def test_padding_mask_matches_reference(ctx):
    """is True exactly at positions t < lengths[b], including lengths 0 and T"""
    t = 7
    lengths = torch.tensor([7, 0, 3, 1, ctx.randint(0, 8)])
    want = padding(lengths, t)
    positions = torch.arange(t)
    suspects = {
        "an inverted mask: True marks the padding (the key_padding_mask convention of nn.MultiheadAttention), "
        "but True must mean 'may attend'": ~want,
        "positions t <= lengths[b]: off by one (positions start at 0)": (positions <= lengths[:, None])[:, None, None, :],
        "positions t < lengths[b] - 1: off by one": (positions < lengths[:, None] - 1)[:, None, None, :],
    }
    _expect_mask(ctx.call("padding_mask", lengths, t), want, f"padding_mask(tensor({lengths.tolist()}), {t})", suspects,
                 hint="mask[b, 0, 0, t] is True exactly when t < lengths[b]")


@hidden("padding_mask", points=1, group="hygiene")
def test_padding_mask_device_and_input(ctx):
    """is on lengths' device, accepts int32 and int64 lengths, leaves lengths unmodified"""
    for dtype in (torch.int64, torch.int32):
        lengths = torch.tensor([4, 2, 0], dtype=dtype)
        result = ctx.call_full("padding_mask", lengths, 5)
        what = f"padding_mask({str(dtype).removeprefix('torch.')} lengths, 5)"
        expect_tensor(result.value, what, shape=(3, 1, 1, 5), device=ctx.session.device,
                      hint="Create positions with torch.arange(T, device=lengths.device)")
        _expect_mask(result.value, padding(lengths, 5), what, {})
        expect_unchanged(lengths, result.args_after[0], "padding_mask's input lengths")


# --- masked_softmax -------------------------------------------------------------------------

@hidden("masked_softmax", points=1, group="shapes")
def test_masked_softmax_keeps_shape(ctx):
    """returns the scores' shape for masks that broadcast: (T_q, T_k), (B, 1, 1, T_k), full"""
    scores = ctx.randn(2, 3, 4, 6)
    for mask_shape in [(4, 6), (2, 1, 1, 6), (2, 3, 4, 6), (1, 6)]:
        mask = random_mask(ctx, *mask_shape)
        expect_tensor(ctx.call("masked_softmax", scores, mask), f"masked_softmax(scores (2, 3, 4, 6), mask {mask_shape})",
                      shape=scores.shape, hint="The result has the scores' shape; the mask only broadcasts against it")


@hidden("masked_softmax", points=2, group="numerics")
def test_masked_softmax_matches_reference(ctx):
    """matches torch.softmax of -inf-filled scores (float32 and float64, dim=-1 and another dim)"""
    for dtype in FLOATS:
        scores, mask = ctx.randn(2, 3, 5, 7, dtype=dtype, scale=3.0), random_mask(ctx, 2, 1, 5, 7)
        what = f"masked_softmax in {str(dtype)[6:]}"
        got = ctx.call("masked_softmax", scores, mask)
        if torch.isnan(expect_tensor(got, what, dtype=dtype)).any():
            fail(f"{what} contains NaN although every row has a visible key",
                 "Was the mask turned into a bias by multiplying it with -inf? 0 * -inf is NaN: block with "
                 "masked_fill(~mask, float('-inf')) or torch.where instead")
        expect_close(got, oracle_masked_softmax(scores, mask), what, **tolerance(dtype),
                     suspects=softmax_suspects(scores, mask))
    scores = ctx.randn(3, 6, 4, scale=3.0)
    mask = torch.rand(3, 6, 4, generator=ctx.generator) < 0.6
    mask[:, 0, :] = True  # every slice along dim=1 keeps a visible entry
    for dim in (1, -2):
        expect_close(ctx.call("masked_softmax", scores, mask, dim=dim), oracle_masked_softmax(scores, mask, dim),
                     f"masked_softmax(scores, mask, dim={dim})", **tolerance(torch.float64),
                     suspects=softmax_suspects(scores, mask, dim), hint="Take the maximum and the sum along `dim`")


@hidden("masked_softmax", points=2, group="properties")
def test_masked_softmax_blocked_weights_are_exactly_zero(ctx):
    """blocked weights are exactly 0 even under huge scores; True = may attend; rows sum to 1"""
    scores, mask = ctx.randn(4, 5, 8), random_mask(ctx, 4, 5, 8, p_visible=0.5)
    scores = torch.where(mask, scores, scores + 1000.0)  # huge blocked scores: the softmax must never see them
    got = expect_tensor(ctx.call("masked_softmax", scores, mask), "masked_softmax", shape=scores.shape)
    if torch.isnan(got).any():
        fail("masked_softmax gave NaN for rows that have visible keys, when the blocked scores are huge",
             "Block the scores (masked_fill with -inf) before taking the maximum and exponentiating; masking after "
             "a softmax over all keys lets the visible weights underflow to 0, and renormalising divides 0 by 0")
    _expect_exact_zero(got, ~mask, "the weight of a blocked key",
                       "Set blocked scores to -inf before exponentiating (True = may attend: block where the mask is False)")
    sums = got.sum(-1)
    if (sums - 1).abs().max() > 1e-9:
        fail(f"rows with visible keys sum to {sums.reshape(-1)[(sums - 1).abs().reshape(-1).argmax()].item():.6g}, not 1",
             "Normalise over the visible keys only: the mask goes into the scores before the softmax")
    one_hot = torch.zeros(3, 6, dtype=torch.bool)
    one_hot[torch.arange(3), torch.tensor([0, 5, 2])] = True
    got = expect_tensor(ctx.call("masked_softmax", ctx.randn(3, 6, scale=5.0), one_hot), "masked_softmax with one visible key per row",
                        shape=(3, 6))
    if not torch.equal(got.to(torch.float64), one_hot.to(torch.float64)):
        fail("with exactly one True per row, the weights should be 1 at that key and 0 elsewhere",
             "True means 'may attend': is the mask inverted?")


@hidden("masked_softmax", points=2, group="properties")
def test_masked_softmax_fully_masked_rows_are_zero(ctx):
    """a row with no visible key gives zeros: not NaN, not uniform; other rows are unaffected"""
    scores, mask = ctx.randn(2, 4, 6), random_mask(ctx, 2, 4, 6)
    mask[0, 2] = False
    mask[1] = False  # a whole sequence without visible keys
    got = ctx.call("masked_softmax", scores, mask)
    expect_tensor(got, "masked_softmax", shape=scores.shape)
    _expect_zero_rows(got, ~rows_with_visible_key(mask, scores.shape), "masked_softmax", n_keys=6)
    expect_close(got, oracle_masked_softmax(scores, mask), "masked_softmax with some fully masked rows",
                 **tolerance(torch.float64), hint="Rows with visible keys must not change when another row is fully masked")
    column = torch.ones(5, 3, dtype=torch.bool)
    column[:, 1] = False  # dim=0: the middle column has no visible entry
    got = ctx.call("masked_softmax", ctx.randn(5, 3), column, dim=0)
    _expect_zero_rows(expect_tensor(got, "masked_softmax(..., dim=0)", shape=(5, 3)).T, torch.tensor([[False], [True], [False]]),
                      "masked_softmax(..., dim=0) for a column with no visible entry", n_keys=5)


@hidden("masked_softmax", points=2, group="gradients")
def test_masked_softmax_gradients(ctx):
    """gradient matches the reference; exactly 0 at blocked scores; finite in fully masked rows"""
    scores, mask, g = ctx.randn(2, 5, 6), random_mask(ctx, 2, 5, 6), ctx.randn(2, 5, 6)
    mask[0, 1] = False
    mask[1, 4] = False
    result = ctx.call_full("masked_softmax", scores, mask, grad={"wrt": [0], "grad_outputs": [g]})
    expect_tensor(result.value, "masked_softmax", shape=scores.shape, dtype=torch.float64)
    expect_no_backward_error(result, "masked_softmax")
    grad = _expect_finite(result.input_grads[0], "d loss / d scores", NAN_GRAD_HINT)
    _expect_exact_zero(grad, ~mask, "d loss / d scores at a blocked position",
                       "A blocked score must not influence anything: is the maximum taken over the blocked scores too, "
                       "or the mask applied after the exponential or the softmax?")
    leaf = scores.clone().requires_grad_(True)
    oracle_masked_softmax(leaf, mask).backward(g)
    expect_close(result.input_grads[0], leaf.grad, "d loss / d scores", **tolerance(torch.float64),
                 hint=guess("Is part of the computation detached (.detach(), .data, no_grad), or computed outside torch?"))


@hidden("masked_softmax", points=1, group="hygiene")
def test_masked_softmax_keeps_dtype_device_and_inputs(ctx):
    """keeps dtype and device, leaves scores and mask unmodified, is deterministic"""
    for dtype in FLOATS:
        scores, mask = ctx.randn(3, 4, 5, dtype=dtype), random_mask(ctx, 3, 4, 5)
        first = ctx.call_full("masked_softmax", scores, mask)
        expect_tensor(first.value, f"masked_softmax of {str(dtype)[6:]} scores", dtype=dtype, device=ctx.session.device)
        expect_unchanged(scores, first.args_after[0], "masked_softmax's input scores")
        expect_unchanged(mask, first.args_after[1], "masked_softmax's input mask")
        _expect_same(ctx.call("masked_softmax", scores, mask), first.value, "a second call on the same inputs")


# --- scaled_dot_product_attention ------------------------------------------------------------

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
        expect_tensor(out, f"out of {what}", shape=(*batch, t_q, 4), hint="out is weights @ v: (..., T_q, T_k) @ (..., T_k, d_v)")
        expect_tensor(weights, f"weights of {what}", shape=(*batch, t_q, t_k),
                      hint="The mask broadcasts against the scores (..., T_q, T_k); it must not change their shape")
    q, k, v = qkv(ctx, (2,), 3, 4, 8, 8)
    expect_pair(ctx.call("scaled_dot_product_attention", q, k, v), "scaled_dot_product_attention(q, k, v) without a mask")


@hidden("scaled_dot_product_attention", points=2, group="numerics")
def test_attention_matches_reference(ctx):
    """out and weights match F.scaled_dot_product_attention(attn_mask=mask) (float64 and float32)"""
    cases = [("a bottom-right causal (T_q, T_k) mask", (2, 3), 4, 6, oracle_causal(4, 6)),
             ("a (B, 1, 1, T) padding mask", (2, 3), 5, 5, padding([5, 2], 5)),
             ("a causal & padding (B, 1, T, T) mask", (2, 3), 5, 5, oracle_causal(5, 5) & padding([3, 5], 5)),
             ("a random (B, H, T_q, T_k) mask", (2, 3), 4, 7, None)]
    for name, batch, t_q, t_k, mask in cases:
        mask = random_mask(ctx, *batch, t_q, t_k) if mask is None else mask
        q, k, v = qkv(ctx, batch, t_q, t_k, 8, 6)
        out, weights = expect_pair(ctx.call("scaled_dot_product_attention", q, k, v, mask), f"attention with {name}")
        want_out, want_w = oracle_attention(q, k, v, mask)
        bad_outs, bad_weights = attention_suspects(q, k, v, mask)
        expect_tensor(out, "attention output for float64 inputs", dtype=torch.float64)
        expect_close(weights, want_w, f"attention weights with {name}", **tolerance(torch.float64), suspects=bad_weights,
                     hint="weights = masked_softmax(q @ k.transpose(-2, -1) / sqrt(d_k), mask)")
        expect_close(out, want_out, f"attention output with {name}", **tolerance(torch.float64), suspects=bad_outs,
                     hint="out = weights @ v")
    q, k, v = qkv(ctx, (4,), 6, 6, 16, 16, dtype=torch.float32)
    mask = oracle_causal(6, 6)
    out, weights = expect_pair(ctx.call("scaled_dot_product_attention", q, k, v, mask), "float32 attention")
    want_out, want_w = oracle_attention(q, k, v, mask)
    expect_close(weights, want_w, "float32 attention weights with a causal mask", **tolerance(torch.float32))
    expect_close(out, want_out, "float32 attention output with a causal mask", **tolerance(torch.float32))


@hidden("scaled_dot_product_attention", points=1, group="properties")
def test_attention_is_causal(ctx):
    """with a causal mask, changing (even huge) future keys and values leaves earlier outputs unchanged"""
    q, k, v = qkv(ctx, (2, 2), 6, 6, 8, 4)
    mask = oracle_causal(6, 6)
    out, _ = expect_pair(ctx.call("scaled_dot_product_attention", q, k, v, mask), "causal attention")
    out = expect_tensor(out, "causal attention output", shape=(2, 2, 6, 4))
    t = ctx.randint(0, 5)
    k2, v2 = k.clone(), v.clone()
    k2[..., t + 1:, :] = ctx.randn(2, 2, 5 - t, 8, scale=1000.0)  # scores in the thousands, all of them blocked
    v2[..., t + 1:, :] = ctx.randn(2, 2, 5 - t, 4, scale=1000.0)
    result, _ = expect_pair(ctx.call("scaled_dot_product_attention", q, k2, v2, mask), "causal attention")
    out2 = expect_tensor(result, "causal attention output", shape=(2, 2, 6, 4))
    hint = ("The future leaks into the past. Block the scores before the softmax, and take the maximum over the visible "
            "scores only (after masked_fill), so that a huge blocked score changes nothing")
    if torch.isnan(out2[..., :t + 1, :]).any():
        fail(f"after changing keys and values after position {t} to huge values, outputs up to {t} became NaN", hint)
    want = torch.cat([out[..., :t + 1, :], out2[..., t + 1:, :]], dim=-2)  # unchanged up to t; anything after t
    expect_close(result, want, f"the output after changing the keys and values after position {t} (positions <= {t} must not change)",
                 **tolerance(torch.float64), hint=hint)


@hidden("scaled_dot_product_attention", points=1, group="properties")
def test_attention_padding_invariance(ctx):
    """changing the padded keys and values changes no output; their weights are exactly 0"""
    lengths = [5, 2, 4]
    mask = padding(lengths, 5)
    q, k, v = qkv(ctx, (3, 2), 5, 5, 8, 4)
    out, weights = expect_pair(ctx.call("scaled_dot_product_attention", q, k, v, mask), "attention with a padding mask")
    _expect_exact_zero(weights, ~mask, "the attention weight of a padded key",
                       "Pass the mask to masked_softmax: True = may attend, and the (B, 1, 1, T) mask blocks keys")
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
    _expect_zero_rows(weights, empty, "attention weights", n_keys=6)
    _expect_zero_rows(out, empty, "attention output", n_keys=6)
    want_out, want_w = oracle_attention(q, k, v, mask)
    expect_close(weights, want_w, "attention weights with fully masked queries", **tolerance(torch.float64))
    expect_close(out, want_out, "attention output with fully masked queries", **tolerance(torch.float64))


@hidden("scaled_dot_product_attention", points=1, group="gradients")
def test_attention_gradients_match(ctx):
    """gradients w.r.t. q, k and v match the reference, finite with a fully masked query"""
    q, k, v = qkv(ctx, (2, 2), 5, 6, 8, 4)
    mask = oracle_causal(5, 6) & padding([6, 4], 6)
    mask = mask.expand(2, 2, 5, 6).clone()
    mask[1, 1, 2] = False  # one query with no visible key
    g_out, g_w = ctx.randn(2, 2, 5, 4), ctx.randn(2, 2, 5, 6)
    result = ctx.call_full("scaled_dot_product_attention", q, k, v, mask, grad={"wrt": [0, 1, 2], "grad_outputs": [g_out, g_w]})
    for what, value in zip(("attention output", "attention weights"), expect_pair(result.value, "scaled_dot_product_attention")):
        expect_tensor(value, f"{what} for float64 inputs", dtype=torch.float64)
    expect_no_backward_error(result, "scaled_dot_product_attention")
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    torch.autograd.backward(list(differentiable_attention(*leaves, mask)), [g_out, g_w])
    for name, got, leaf in zip("qkv", result.input_grads, leaves):
        _expect_finite(got, f"d loss / d {name}", NAN_GRAD_HINT)
        expect_close(got, leaf.grad, f"d loss / d {name}", **tolerance(torch.float64),
                     hint=guess("Is part of the computation detached, or computed outside torch (numpy, .item())?"))


@hidden("scaled_dot_product_attention", points=1, group="gradients")
def test_attention_future_gradient_is_exactly_zero(ctx):
    """with a causal mask, the gradient of output t w.r.t. keys and values after t is exactly 0"""
    q, k, v = qkv(ctx, (2, 3), 6, 6, 8, 4)
    mask = oracle_causal(6, 6)
    for t in (0, ctx.randint(1, 5)):
        g_out = torch.zeros(2, 3, 6, 4, dtype=torch.float64)
        g_out[..., t, :] = ctx.randn(2, 3, 4)  # only output t carries a gradient
        result = ctx.call_full("scaled_dot_product_attention", q, k, v, mask, grad={"wrt": [1, 2], "grad_outputs": [g_out, None]})
        expect_pair(result.value, "scaled_dot_product_attention")
        expect_no_backward_error(result, "scaled_dot_product_attention")
        future = torch.arange(6).unsqueeze(-1) > t  # (T_k, 1): key positions after t
        hint = ("Blocked keys must have no influence at all, to the last bit: take the maximum after masked_fill "
                "(over visible scores only), and block the scores before exponentiating")
        for name, grad in zip("kv", result.input_grads):
            grad = _expect_finite(grad, f"d out[{t}] / d {name}", NAN_GRAD_HINT)
            _expect_exact_zero(grad, future, f"d out[{t}] / d {name} at a position after {t}", hint)
            if name == "v" and not grad[..., : t + 1, :].abs().sum() > 0:  # d out[t] / d v[j] = weights[t, j] * g
                fail(f"d out[{t}] / d v is zero at every position, also at positions <= {t}",
                     "Is the computation detached (.detach(), .data, no_grad)?")


@hidden("scaled_dot_product_attention", points=1, group="hygiene")
def test_attention_keeps_dtype_device_and_inputs(ctx):
    """keeps dtype and device, leaves q, k, v and the mask unmodified; mask=None is plain attention"""
    for dtype in FLOATS:
        q, k, v = qkv(ctx, (2,), 3, 4, 8, 8, dtype=dtype)
        mask = random_mask(ctx, 3, 4)
        result = ctx.call_full("scaled_dot_product_attention", q, k, v, mask)
        out, weights = expect_pair(result.value, "scaled_dot_product_attention")
        for what, value in (("out", out), ("weights", weights)):
            expect_tensor(value, f"{what} for {str(dtype)[6:]} inputs", dtype=dtype, device=ctx.session.device)
        for name, before, after in zip(("q", "k", "v", "mask"), (q, k, v, mask), result.args_after):
            expect_unchanged(before, after, f"input {name}")
    q, k, v = qkv(ctx, (2,), 4, 5, 8, 6)
    out, weights = expect_pair(ctx.call("scaled_dot_product_attention", q, k, v), "scaled_dot_product_attention(q, k, v)")
    want_out, want_w = oracle_attention(q, k, v)
    expect_close(weights, want_w, "weights with mask=None", **tolerance(torch.float64), hint="Without a mask, every key is visible")
    expect_close(out, want_out, "output with mask=None", **tolerance(torch.float64), hint="Without a mask, every key is visible")


# --- MultiHeadAttention ---------------------------------------------------------------------

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


def build_mha(ctx, d_model, n_heads, bias=True, dtype=torch.float64):
    """The student's module and a float64 nn.MultiheadAttention holding the same weights."""
    module = ctx.construct("MultiHeadAttention", d_model, n_heads, bias=bias)
    expected = {f"{p}.weight": (d_model, d_model) for p in PROJECTIONS}
    if bias:
        expected.update({f"{p}.bias": (d_model,) for p in PROJECTIONS})
    got = {name: tuple(t.shape) for name, t in module.parameters.items()}
    if got != expected:
        fail(f"MultiHeadAttention({d_model}, {n_heads}, bias={bias}) has parameters {sorted(got)}, expected {sorted(expected)}",
             "Keep the given __init__: four nn.Linear(d_model, d_model, bias=bias) named q_proj, k_proj, v_proj, out_proj")
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


def run_oracle(oracle, x, mask):
    """nn.MultiheadAttention on x (float64) with our mask: its boolean masks mark BLOCKED pairs, one per (batch, head)."""
    x = x.to(torch.float64)
    if mask is None:
        return oracle(x, x, x, need_weights=False)[0]
    B, T, _ = x.shape
    H = oracle.num_heads
    blocked = (~mask).expand(B, H, T, T).reshape(B * H, T, T)
    return oracle(x, x, x, attn_mask=blocked, need_weights=False)[0]


def manual_mha(state, x, mask, n_heads):
    """Multi-head attention in float64 from the state dict, with our attention oracle (fully masked rows give 0)."""
    def linear(name, t):
        return t @ state[f"{name}.weight"].T + state.get(f"{name}.bias", 0)

    B, T, D = x.shape
    split = lambda t: t.reshape(B, T, n_heads, D // n_heads).transpose(1, 2)  # noqa: E731  (B, T, D) -> (B, H, T, dh)
    q, k, v = (split(linear(p, x.to(torch.float64))) for p in PROJECTIONS[:3])
    out, _ = differentiable_attention(q, k, v, torch.ones(T, T, dtype=torch.bool) if mask is None else mask)
    return linear("out_proj", out.transpose(1, 2).reshape(B, T, D))  # (B, H, T, dh) -> (B, T, D)


def mha_suspects(state, x, mask, n_heads) -> dict:
    return {
        "multi-head attention that ignores the mask": manual_mha(state, x, None, n_heads),
        "an inverted mask (True treated as blocked, the convention of nn.MultiheadAttention)": manual_mha(state, x, ~mask, n_heads),
    }


def mha_masks(t: int, lengths) -> list[tuple[str, torch.Tensor]]:
    return [("a causal (T, T) mask", oracle_causal(t, t)),
            ("a padding (B, 1, 1, T) mask", padding(lengths, t)),
            ("a causal & padding (B, 1, T, T) mask", oracle_causal(t, t) & padding(lengths, t))]


@hidden("MultiHeadAttention", points=1, group="shapes")
def test_mha_shapes_with_masks(ctx):
    """forward(x, mask) keeps (B, T, d_model) for mask None, (T, T), (B, 1, 1, T) and (B, 1, T, T)"""
    for B, T, d_model, n_heads in [(2, 5, 12, 3), (3, 4, 8, 2), (1, 1, 8, 4)]:
        module, _, _ = build_mha(ctx, d_model, n_heads)
        x = ctx.randn(B, T, d_model)
        lengths = [max(1, T - b) for b in range(B)]
        for name, mask in [("no", None)] + mha_masks(T, lengths):
            expect_tensor(ctx.forward(module, x, mask).value, f"MultiHeadAttention({d_model}, {n_heads}) on x {(B, T, d_model)} with {name} mask",
                          shape=(B, T, d_model), hint="Pass the mask to the attention as it is; it broadcasts over the heads")


@hidden("MultiHeadAttention", points=2, group="numerics")
def test_mha_matches_nn_multihead_attention(ctx):
    """matches nn.MultiheadAttention with the same weights and masks (float64, and float32)"""
    for d_model, n_heads, bias in [(24, 3, True), (16, 4, False)]:
        module, oracle, state = build_mha(ctx, d_model, n_heads, bias=bias)
        x = ctx.randn(2, 6, d_model)
        for name, mask in mha_masks(6, [6, 3]):
            got = ctx.forward(module, x, mask).value
            what = f"MultiHeadAttention({d_model}, {n_heads}, bias={bias}) output with {name}"
            expect_tensor(got, f"{what} for a float64 module and input", dtype=torch.float64)
            expect_close(got, run_oracle(oracle, x, mask), what, **tolerance(torch.float64),
                         suspects=mha_suspects(state, x, mask, n_heads),
                         hint="Project, split heads, attend with the mask, merge heads, then apply out_proj")
    module, oracle, _ = build_mha(ctx, 16, 2, dtype=torch.float32)
    x = ctx.randn(3, 5, 16, dtype=torch.float32)
    mask = oracle_causal(5, 5) & padding([5, 2, 4], 5)
    expect_close(ctx.forward(module, x, mask).value, run_oracle(oracle, x, mask), "float32 MultiHeadAttention output",
                 **tolerance(torch.float32, 10))


@hidden("MultiHeadAttention", points=1, group="properties")
def test_mha_is_causal(ctx):
    """with a causal mask, changing tokens after t leaves outputs up to t unchanged; their gradient is exactly 0"""
    module, _, _ = build_mha(ctx, 12, 3)
    T = 6
    x, mask, t = ctx.randn(2, T, 12), oracle_causal(T, T), ctx.randint(0, T - 1)
    out = expect_tensor(ctx.forward(module, x, mask).value, "MultiHeadAttention output", shape=(2, T, 12))
    x2 = x.clone()
    x2[:, t + 1:] = ctx.randn(2, T - t - 1, 12, scale=10.0)
    result = ctx.forward(module, x2, mask).value
    out2 = expect_tensor(result, "MultiHeadAttention output", shape=(2, T, 12))
    want = torch.cat([out[:, :t + 1], out2[:, t + 1:]], dim=1)  # unchanged up to t; anything after t
    expect_close(result, want, f"the output after changing the tokens after position {t} (positions <= {t} must not change)",
                 **tolerance(torch.float64), hint="Is the mask passed on to the attention?")

    g = torch.zeros(2, T, 12, dtype=torch.float64)
    g[:, t] = ctx.randn(2, 12)  # only output t carries a gradient
    result = ctx.forward(module, x, mask, grad={"wrt": [0], "grad_outputs": [g]})
    expect_no_backward_error(result, "MultiHeadAttention")
    grad = _expect_finite(result.input_grads[0], f"d out[{t}] / d x", NAN_GRAD_HINT)
    _expect_exact_zero(grad, (torch.arange(T) > t).unsqueeze(-1), f"d out[{t}] / d x at a position after {t}",
                       "Output t must not depend on inputs after t at all: pass the causal mask on to the attention")


@hidden("MultiHeadAttention", points=1, group="properties")
def test_mha_padding_invariance(ctx):
    """changing the padded tokens changes no output at a real position"""
    module, _, _ = build_mha(ctx, 12, 3)
    lengths = [6, 3, 1]
    x, mask = ctx.randn(3, 6, 12), padding(lengths, 6)
    out = expect_tensor(ctx.forward(module, x, mask).value, "MultiHeadAttention output", shape=(3, 6, 12))
    x2 = x.clone()
    real = torch.zeros(3, 6, 1, dtype=torch.bool)
    for b, n in enumerate(lengths):
        x2[b, n:] = ctx.randn(6 - n, 12, scale=10.0)
        real[b, :n] = True
    result = ctx.forward(module, x2, mask).value
    out2 = expect_tensor(result, "MultiHeadAttention output", shape=(3, 6, 12))
    expect_close(result, torch.where(real, out, out2),  # unchanged at real positions; anything at padded ones
                 "the output after changing the padded tokens (real positions must not change)", **tolerance(torch.float64),
                 hint="Is the padding mask passed on to the attention, as it is?")


@hidden("MultiHeadAttention", points=2, group="gradients")
def test_mha_gradients_match(ctx):
    """gradients w.r.t. x and every parameter match the reference; finite for a fully padded sequence"""
    module, oracle, state = build_mha(ctx, 12, 3)
    x, g = ctx.randn(2, 5, 12), ctx.randn(2, 5, 12)
    mask = oracle_causal(5, 5) & padding([5, 3], 5)
    result = ctx.forward(module, x, mask, grad={"wrt": [0], "grad_outputs": [g]})
    expect_no_backward_error(result, "MultiHeadAttention")
    x64 = x.clone().requires_grad_(True)
    run_oracle(oracle, x64, mask).backward(g)
    detached = guess("Is part of the computation detached (.detach(), .data, no_grad), or computed outside torch?")
    expect_close(result.input_grads[0], x64.grad, "d loss / d x", **tolerance(torch.float64), hint=detached)
    w_grads = dict(zip(PROJECTIONS[:3], oracle.in_proj_weight.grad.chunk(3)))
    b_grads = dict(zip(PROJECTIONS[:3], oracle.in_proj_bias.grad.chunk(3)))
    w_grads["out_proj"], b_grads["out_proj"] = oracle.out_proj.weight.grad, oracle.out_proj.bias.grad
    for p in PROJECTIONS:
        for kind, want in (("weight", w_grads[p]), ("bias", b_grads[p])):
            got = result.param_grads.get(f"{p}.{kind}")
            if got is None:
                fail(f"{p}.{kind} received no gradient", f"Is {p} used in forward, on a path that is not detached?")
            expect_close(got, want, f"gradient of {p}.{kind}", **tolerance(torch.float64), hint=detached)
    # a batch with an empty sequence: its attention output is 0, so the module returns out_proj.bias there
    mask = padding([4, 0], 4)
    x, g = ctx.randn(2, 4, 12), ctx.randn(2, 4, 12)
    result = ctx.forward(module, x, mask, grad={"wrt": [0], "grad_outputs": [g]})
    out = _expect_finite(result.value, "MultiHeadAttention output for a batch with a sequence of length 0", NAN_ROW_HINT)
    want = torch.stack([out[0], state["out_proj.bias"].expand(4, 12)])  # sequence 1 has no visible key at all
    expect_close(result.value, want, "output for a batch whose sequence 1 has length 0 (expected out_proj.bias there)",
                 **tolerance(torch.float64), hint="With no visible key the attention output is 0, so only out_proj's bias remains")
    expect_no_backward_error(result, "MultiHeadAttention")
    _expect_finite(result.input_grads[0], "d loss / d x for a batch with a sequence of length 0", NAN_GRAD_HINT)
    for name, grad in result.param_grads.items():
        _expect_finite(grad, f"gradient of {name} for a batch with a sequence of length 0", NAN_GRAD_HINT)
    leaf = x.clone().requires_grad_(True)
    manual_mha(state, leaf, mask, 3).backward(g)
    expect_close(result.input_grads[0], leaf.grad, "d loss / d x for a batch with a sequence of length 0", **tolerance(torch.float64))


@hidden("MultiHeadAttention", points=1, group="hygiene")
def test_mha_keeps_dtype_device_and_inputs(ctx):
    """keeps dtype and device, leaves x and the mask unmodified, is deterministic in eval(); mask=None works"""
    for dtype in FLOATS:
        module, oracle, _ = build_mha(ctx, 8, 2, dtype=dtype)
        x, mask = ctx.randn(2, 4, 8, dtype=dtype), oracle_causal(4, 4) & padding([4, 2], 4)
        first = ctx.forward(module, x, mask)
        expect_tensor(first.value, f"output for a {str(dtype)[6:]} module and input", dtype=dtype, device=ctx.session.device)
        expect_unchanged(x, first.args_after[0], "the input x")
        expect_unchanged(mask, first.args_after[1], "the mask")
        _expect_same(ctx.forward(module, x, mask).value, first.value, "a second forward on the same input")
    module, oracle, _ = build_mha(ctx, 8, 2)
    x = ctx.randn(2, 4, 8)
    expect_close(ctx.forward(module, x).value, run_oracle(oracle, x, None), "MultiHeadAttention output with mask=None",
                 **tolerance(torch.float64), hint="mask=None means no masking")
