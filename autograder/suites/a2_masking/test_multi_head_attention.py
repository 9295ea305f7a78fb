"""MultiHeadAttention.forward(x, mask=None): multi-head self-attention that passes the mask on to every head.

Vaswani et al., "Attention Is All You Need" (2017), §3.2.2 (multi-head attention) with the masking of §3.2.3: the
mask says which positions may attend to which, the same for every head, so (T, T), (B, 1, 1, T) and (B, 1, T, T)
masks broadcast against the per-head scores (B, H, T, T) as they are. Expected: ``reference.multi_head_attention``,
cross-checked against ``nn.MultiheadAttention`` holding the same weights (its boolean masks inverted).
Every forward goes through ``forward_mha``: when it raises, the student's own attention is tried with the same mask
first, so an error of masked_softmax is not blamed on how forward passes the mask.
"""

from __future__ import annotations

import torch

from autograder.checks import expect_close, expect_equal, expect_tensor, expect_unchanged, guess, tolerance
from autograder.hidden import hidden
from autograder.known_bugs.a2_masking import mha_suspects
from autograder.suites import common
from autograder.suites.a2_masking import inputs
from autograder.suites.a2_masking.expectations import (
    DETACHED,
    expect_exact_zero,
    expect_finite_gradient,
    expect_finite_then_backward,
    forward_mha,
)
from autograder.suites.a2_masking.inputs import build_mha, causal, padding
from autograder.suites.common import FLOATS, PROJECTIONS, expect_keeps_dtype_device_input


def mha_masks(t: int, lengths) -> list[tuple[str, torch.Tensor]]:
    return [("a causal (T, T) mask", causal(t, t)),
            ("a padding (B, 1, 1, T) mask", padding(lengths, t)),
            ("a causal & padding (B, 1, T, T) mask", causal(t, t) & padding(lengths, t))]


@hidden("MultiHeadAttention", points=1, group="shapes")
def test_mha_shapes_with_masks(ctx):
    """forward(x, mask) keeps (B, T, d_model) for mask None, (T, T), (B, 1, 1, T) and (B, 1, T, T)"""
    for B, T, d_model, n_heads in [(2, 5, 12, 3), (3, 4, 8, 2), (1, 1, 8, 4)]:
        module, _ = build_mha(ctx, d_model, n_heads)
        x = ctx.randn(B, T, d_model)
        lengths = [max(1, T - b) for b in range(B)]
        for name, mask in [("no", None)] + mha_masks(T, lengths):
            expect_tensor(forward_mha(ctx, module, n_heads, x, mask).value,
                          f"MultiHeadAttention({d_model}, {n_heads}) on x {(B, T, d_model)} with {name} mask",
                          shape=(B, T, d_model),
                          hint=guess("Pass the mask to the attention as it is; it broadcasts over the heads"))


@hidden("MultiHeadAttention", points=2, group="numerics")
def test_mha_matches_nn_multihead_attention(ctx):
    """matches nn.MultiheadAttention with the same weights and masks (float64, and float32)"""
    for d_model, n_heads, bias in [(24, 3, True), (16, 4, False)]:
        module, state = build_mha(ctx, d_model, n_heads, bias=bias)
        x = ctx.randn(2, 6, d_model)
        for name, mask in mha_masks(6, [6, 3]):
            got = forward_mha(ctx, module, n_heads, x, mask).value
            what = f"MultiHeadAttention({d_model}, {n_heads}, bias={bias}) output with {name}"
            expect_tensor(got, f"{what} for a float64 module and input", dtype=torch.float64)
            expect_close(got, inputs.mha(state, x, mask, n_heads), what, **tolerance(torch.float64),
                         suspects=mha_suspects(state, x, mask, n_heads),
                         hint=guess("Project, split heads, attend with the mask, merge heads, then apply out_proj"))
    module, state = build_mha(ctx, 16, 2, dtype=torch.float32)
    x = ctx.randn(3, 5, 16, dtype=torch.float32)
    mask = causal(5, 5) & padding([5, 2, 4], 5)
    expect_close(forward_mha(ctx, module, 2, x, mask).value, inputs.mha(state, x, mask, 2),
                 "float32 MultiHeadAttention output", **tolerance(torch.float32, 10))


@hidden("MultiHeadAttention", points=1, group="properties")
def test_mha_is_causal(ctx):
    """with a causal mask, changing tokens after t leaves outputs up to t unchanged; their gradient is exactly 0"""
    module, _ = build_mha(ctx, 12, 3)
    T = 6
    x, mask, t = ctx.randn(2, T, 12), causal(T, T), ctx.randint(0, T - 1)
    out = expect_tensor(forward_mha(ctx, module, 3, x, mask).value, "MultiHeadAttention output", shape=(2, T, 12))
    x2 = x.clone()
    x2[:, t + 1:] = ctx.randn(2, T - t - 1, 12, scale=10.0)
    result = forward_mha(ctx, module, 3, x2, mask).value
    out2 = expect_tensor(result, "MultiHeadAttention output", shape=(2, T, 12))
    want = torch.cat([out[:, :t + 1], out2[:, t + 1:]], dim=1)  # unchanged up to t; anything after t
    expect_close(result, want,
                 f"the output after changing the tokens after position {t} (positions <= {t} must not change)",
                 **tolerance(torch.float64), hint=guess("Is the mask passed on to the attention?"))

    g = torch.zeros(2, T, 12, dtype=torch.float64)
    g[:, t] = ctx.randn(2, 12)  # only output t carries a gradient
    result = forward_mha(ctx, module, 3, x, mask, grad={"wrt": [0], "grad_outputs": [g]})
    expect_finite_then_backward(result, "MultiHeadAttention",
                                {"MultiHeadAttention output with a causal mask": result.value})
    grad = expect_finite_gradient(result.input_grads[0], f"d out[{t}] / d x")
    expect_exact_zero(grad, (torch.arange(T) > t).unsqueeze(-1), f"d out[{t}] / d x at a position after {t}",
                      guess("Output t must not depend on inputs after t at all: pass the causal mask on to the "
                            "attention"))


@hidden("MultiHeadAttention", points=1, group="properties")
def test_mha_padding_invariance(ctx):
    """changing the padded tokens changes no output at a real position"""
    module, _ = build_mha(ctx, 12, 3)
    lengths = [6, 3, 1]
    x, mask = ctx.randn(3, 6, 12), padding(lengths, 6)
    out = expect_tensor(forward_mha(ctx, module, 3, x, mask).value, "MultiHeadAttention output", shape=(3, 6, 12))
    x2 = x.clone()
    real = torch.zeros(3, 6, 1, dtype=torch.bool)
    for b, n in enumerate(lengths):
        x2[b, n:] = ctx.randn(6 - n, 12, scale=10.0)
        real[b, :n] = True
    result = forward_mha(ctx, module, 3, x2, mask).value
    out2 = expect_tensor(result, "MultiHeadAttention output", shape=(3, 6, 12))
    expect_close(result, torch.where(real, out, out2),  # unchanged at real positions; anything at padded ones
                 "the output after changing the padded tokens (real positions must not change)",
                 **tolerance(torch.float64),
                 hint=guess("Is the padding mask passed on to the attention, as it is?"))


@hidden("MultiHeadAttention", points=2, group="gradients")
def test_mha_gradients_match(ctx):
    """gradients w.r.t. x and every parameter match the reference; finite for a fully padded sequence"""
    module, state = build_mha(ctx, 12, 3)
    x, g = ctx.randn(2, 5, 12), ctx.randn(2, 5, 12)
    mask = causal(5, 5) & padding([5, 3], 5)
    result = forward_mha(ctx, module, 3, x, mask, grad={"wrt": [0], "grad_outputs": [g]})
    expect_finite_then_backward(result, "MultiHeadAttention",
                                {"MultiHeadAttention output with a causal & padding mask": result.value})
    x_grad, param_grads = inputs.mha_gradients(state, x, mask, 3, g)
    expect_close(result.input_grads[0], x_grad, "d loss / d x", **tolerance(torch.float64), hint=DETACHED)
    for name, got in common.param_grads(result, [f"{p}.{kind}" for p in PROJECTIONS
                                                 for kind in ("weight", "bias")]).items():
        expect_close(got, param_grads[name], f"gradient of {name}", **tolerance(torch.float64), hint=DETACHED)
    # a batch with an empty sequence: its attention output is 0, so the module returns out_proj.bias there
    mask = padding([4, 0], 4)
    x, g = ctx.randn(2, 4, 12), ctx.randn(2, 4, 12)
    result = forward_mha(ctx, module, 3, x, mask, grad={"wrt": [0], "grad_outputs": [g]})
    what = "MultiHeadAttention output for a batch with a sequence of length 0"
    expect_finite_then_backward(result, "MultiHeadAttention", {what: result.value}, torch.tensor([[[False]], [[True]]]))
    out = expect_tensor(result.value, what)
    want = torch.stack([out[0], inputs.mha(state, x, mask, 3)[1]])  # sequence 1 has no visible key: out_proj.bias
    expect_close(result.value, want, "output for a batch whose sequence 1 has length 0 (expected out_proj.bias there)",
                 **tolerance(torch.float64),
                 hint="With no visible key the attention output is 0, so only out_proj's bias remains")
    expect_finite_gradient(result.input_grads[0], "d loss / d x for a batch with a sequence of length 0")
    for name, grad in result.param_grads.items():
        expect_finite_gradient(grad, f"gradient of {name} for a batch with a sequence of length 0")
    x_grad, _ = inputs.mha_gradients(state, x, mask, 3, g)
    expect_close(result.input_grads[0], x_grad, "d loss / d x for a batch with a sequence of length 0",
                 **tolerance(torch.float64))


@hidden("MultiHeadAttention", points=1, group="hygiene")
def test_mha_keeps_dtype_device_and_inputs(ctx):
    """keeps dtype and device, leaves x and the mask unmodified, is deterministic in eval(); mask=None works"""
    for dtype in FLOATS:
        module, _ = build_mha(ctx, 8, 2, dtype=dtype)
        x, mask = ctx.randn(2, 4, 8, dtype=dtype), causal(4, 4) & padding([4, 2], 4)
        first = forward_mha(ctx, module, 2, x, mask)
        out = expect_keeps_dtype_device_input(ctx, first, x, "MultiHeadAttention output", dtype)
        expect_unchanged(mask, first.args_after[1], "the mask")
        # NaN equals NaN here: the other tests judge NaN, this one only whether a second forward gives the same bits
        expect_equal(forward_mha(ctx, module, 2, x, mask).value, out, "a second forward on the same input",
                     hint="In eval() mode the output must be deterministic", equal_nan=True)
    module, state = build_mha(ctx, 8, 2)
    x = ctx.randn(2, 4, 8)
    expect_close(forward_mha(ctx, module, 2, x).value, inputs.mha(state, x, None, 2),
                 "MultiHeadAttention output with mask=None", **tolerance(torch.float64),
                 hint="mask=None means no masking")
