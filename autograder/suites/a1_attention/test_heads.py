"""Hidden tests of split_heads(x, n_heads): (B, T, d_model) -> (B, H, T, d_head), and its inverse merge_heads.

Vaswani et al., "Attention Is All You Need" (2017), §3.2.2: multi-head attention runs H heads in parallel, each
on its own d_model / H features of every token; head h owns features h*d_head:(h+1)*d_head.
"""

from __future__ import annotations

from autograder import reference
from autograder.checks import expect_close, expect_equal, expect_no_backward_error, expect_tensor, expect_unchanged
from autograder.hidden import hidden
from autograder.known_bugs.a1_attention import split_heads_suspects

# --- split_heads --------------------------------------------------------------------------


@hidden("split_heads", points=1, group="shapes")
def test_split_heads_shape(ctx):
    """(B, T, d_model) -> (B, H, T, d_head) for several sizes"""
    for B, T, d_model, H in [(2, 5, 12, 3), (1, 1, 8, 8), (3, 4, 16, 1)]:
        expect_tensor(ctx.call("split_heads", ctx.randn(B, T, d_model), H),
                      f"split_heads(x of shape ({B}, {T}, {d_model}), {H})", shape=(B, H, T, d_model // H))


@hidden("split_heads", points=1, group="numerics")
def test_split_heads_layout(ctx):
    """head h holds features h*d_head:(h+1)*d_head of each position"""
    x = ctx.randn(2, 5, 12)
    expect_close(ctx.call("split_heads", x, 3), reference.split_heads(x, 3), "split_heads(x, 3)", atol=0.0, rtol=0.0,
                 suspects=split_heads_suspects(x, 3), hint="Reshape to (B, T, H, d_head), then transpose T and H")


@hidden("split_heads", points=1, group="hygiene")
def test_split_heads_gradient_and_input(ctx):
    """passes gradients straight through and leaves x unmodified"""
    x, g = ctx.randn(2, 3, 8), ctx.randn(2, 2, 3, 4)
    result = ctx.call_full("split_heads", x, 2, grad={"wrt": [0], "grad_outputs": [g]})
    expect_no_backward_error(result, "split_heads")
    # a rearrangement's gradient is the inverse rearrangement of the incoming gradient
    expect_equal(result.input_grads[0], reference.merge_heads(g), "d loss / d x through split_heads")
    expect_unchanged(x, result.args_after[0], "split_heads' input x")


# --- merge_heads --------------------------------------------------------------------------

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
    expect_equal(ctx.call("merge_heads", reference.split_heads(x, 3)), x, "merge_heads(split_heads(x))",
                 hint="Transpose back to (B, T, H, d_head) before reshaping to (B, T, d_model)")


@hidden("merge_heads", points=1, group="hygiene")
def test_merge_heads_gradient_and_input(ctx):
    """passes gradients straight through and leaves its input unmodified"""
    h, g = ctx.randn(2, 2, 3, 4), ctx.randn(2, 3, 8)
    result = ctx.call_full("merge_heads", h, grad={"wrt": [0], "grad_outputs": [g]})
    expect_no_backward_error(result, "merge_heads")
    expect_equal(result.input_grads[0], reference.split_heads(g, 2), "d loss / d x through merge_heads")
    expect_unchanged(h, result.args_after[0], "merge_heads' input")
