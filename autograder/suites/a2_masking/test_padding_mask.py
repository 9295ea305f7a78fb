"""padding_mask(lengths, T): (B, 1, 1, T), True at the real tokens t < lengths[b]; it masks keys.

Padding is masked out of attention as in Vaswani et al., "Attention Is All You Need" (2017), §3.2.3 (illegal
connections are set to -inf before the softmax); the (B, 1, 1, T) shape broadcasts over heads and queries.
Expected: ``reference.padding_mask``.
"""

from __future__ import annotations

import torch

from autograder.checks import expect_tensor, expect_unchanged, fail
from autograder.hidden import hidden
from autograder.known_bugs.a2_masking import padding_mask_suspects
from autograder.suites.a2_masking.expectations import BOOL_HINT, expect_mask
from autograder.suites.a2_masking.inputs import padding
from autograder.suites.common import dtype_name
from autograder.wire import WireTensor


@hidden("padding_mask", points=1, group="shapes")
def test_padding_mask_shape(ctx):
    """returns a bool tensor of shape (B, 1, 1, T): it masks keys and broadcasts over heads and queries"""
    for lengths, t in [([3, 1, 4], 5), ([2], 2), ([0, 6], 6)]:
        what = f"padding_mask(lengths of {len(lengths)} sequences, {t})"
        got = ctx.call("padding_mask", torch.tensor(lengths), t)
        b = len(lengths)
        if isinstance(got, WireTensor) and tuple(got.shape) in {(b, 1, t, 1), (b, t, 1)} and t != 1:
            fail(f"{what} has shape {tuple(got.shape)}: it masks queries",
                 "Padding masks keys: the shape is (B, 1, 1, T)")
        if isinstance(got, WireTensor) and tuple(got.shape) == (b, t):
            fail(f"{what} has shape {(b, t)}, expected (B, 1, 1, T) = {(b, 1, 1, t)}",
                 "Add the head and query dimensions (mask[:, None, None, :]) so it broadcasts against (B, H, T_q, T_k)")
        got = expect_tensor(got, what, shape=(b, 1, 1, t))
        if got.dtype != torch.bool:
            fail(f"{what} has dtype {dtype_name(got.dtype)}, expected bool", BOOL_HINT)


@hidden("padding_mask", points=1, group="numerics")
def test_padding_mask_matches_reference(ctx):
    """is True exactly at positions t < lengths[b], including lengths 0 and T"""
    t = 7
    lengths = torch.tensor([7, 0, 3, 1, ctx.randint(0, 8)])
    expect_mask(ctx.call("padding_mask", lengths, t), padding(lengths, t),
                f"padding_mask(tensor({lengths.tolist()}), {t})", padding_mask_suspects(lengths, t),
                hint="mask[b, 0, 0, t] is True exactly when t < lengths[b]")


@hidden("padding_mask", points=1, group="hygiene")
def test_padding_mask_device_and_input(ctx):
    """is on lengths' device, accepts int32 and int64 lengths, leaves lengths unmodified"""
    for dtype in (torch.int64, torch.int32):
        lengths = torch.tensor([4, 2, 0], dtype=dtype)
        result = ctx.call_full("padding_mask", lengths, 5)
        what = f"padding_mask({dtype_name(dtype)} lengths, 5)"
        expect_tensor(result.value, what, shape=(3, 1, 1, 5), device=ctx.session.device,
                      hint="Create positions with torch.arange(T, device=lengths.device)")
        expect_mask(result.value, padding(lengths, 5), what, {})
        expect_unchanged(lengths, result.args_after[0], "padding_mask's input lengths")
