"""causal_mask(T_q, T_k=None, device=None): query i may attend to key j exactly when j <= i + (T_k - T_q).

The decoder's mask of Vaswani et al., "Attention Is All You Need" (2017), §3.2.3: "We need to prevent leftward
information flow in the decoder to preserve the auto-regressive property". With more keys than queries the queries
are the last T_q positions (bottom-right alignment), as in incremental decoding. Expected: ``reference.causal_mask``,
cross-checked against ``torch.tril`` with the diagonal moved right by ``T_k - T_q``.
"""

from __future__ import annotations

from autograder.checks import expect_tensor, fail
from autograder.hidden import hidden
from autograder.known_bugs.a2_masking import causal_mask_suspects
from autograder.suites.a2_masking.expectations import BOOL_HINT, expect_mask
from autograder.suites.a2_masking.inputs import causal
from autograder.wire import WireTensor

DIAGONAL_HINT = "The diagonal must stay visible: j <= i, not j < i (tril(), not tril(diagonal=-1))"


@hidden("causal_mask", points=1, group="shapes")
def test_causal_mask_shape_and_dtype(ctx):
    """returns a bool tensor of shape (T_q, T_k), T_k defaulting to T_q"""
    for args in [(1,), (4,), (7,), (3, 7), (1, 5), (4, 4)]:
        t_q, t_k = args[0], args[-1]
        what = f"causal_mask({', '.join(map(str, args))})"
        got = ctx.call("causal_mask", *args)
        if isinstance(got, WireTensor) and got.dtype != "bool":
            fail(f"{what} has dtype {got.dtype}, expected bool", BOOL_HINT)
        expect_tensor(got, what, shape=(t_q, t_k))


@hidden("causal_mask", points=1, group="numerics")
def test_causal_mask_matches_reference(ctx):
    """is the lower triangle with its diagonal: query i may attend to keys j <= i (True = may attend)"""
    for t in (6, 2, 1):  # the largest first: for T = 1 several wrong masks coincide
        expect_mask(ctx.call("causal_mask", t), causal(t, t), f"causal_mask({t})", causal_mask_suspects(t, t),
                    hint="Query i (row) may attend to key j (column) exactly when j <= i")


@hidden("causal_mask", points=1, group="properties")
def test_causal_mask_keeps_the_diagonal(ctx):
    """the diagonal stays visible: every token may attend to itself"""
    for t in (3, 5):
        got = expect_tensor(ctx.call("causal_mask", t), f"causal_mask({t})", shape=(t, t))
        diagonal = got.bool().diagonal()
        if not diagonal.all():
            i = int((~diagonal).nonzero()[0])
            fail(f"causal_mask({t})[{i}, {i}] is False: query {i} may not attend to itself", DIAGONAL_HINT)
    got = expect_tensor(ctx.call("causal_mask", 1), "causal_mask(1)", shape=(1, 1))
    if not got.bool().all():
        fail("causal_mask(1) blocks the only key: a single token has nothing but itself to attend to",
             "The diagonal must stay visible: j <= i, not j < i")


@hidden("causal_mask", points=1, group="properties")
def test_causal_mask_bottom_right_alignment(ctx):
    """with T_k > T_q the queries are the last T_q positions (bottom-right alignment)"""
    for t_q, t_k in [(2, 5), (1, 6), (3, 8), (4, 5)]:
        expect_mask(ctx.call("causal_mask", t_q, t_k), causal(t_q, t_k), f"causal_mask({t_q}, {t_k})",
                    causal_mask_suspects(t_q, t_k),
                    hint="Query i may attend to key j exactly when j <= i + (T_k - T_q)")


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
        expect_mask(value, causal(t_q, t_k), what, causal_mask_suspects(t_q, t_k))
