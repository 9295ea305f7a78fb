"""Hidden tests of MultiHeadAttention(d_model, n_heads, bias=True): project, split heads, attend, merge, project.

Vaswani et al., "Attention Is All You Need" (2017), §3.2.2: multi-head attention, each head scaled by
1/sqrt(d_head) in its own subspace, then out_proj over the concatenated heads. nn.MultiheadAttention with the same
weights is PyTorch's implementation of it, and cross-checks the reference.
"""

from __future__ import annotations

import re

import torch

from autograder import autodiff, reference
from autograder.checks import expect_close, expect_no_backward_error, expect_tensor, fail, guess, tolerance
from autograder.hidden import hidden
from autograder.known_bugs.a1_attention import mha_suspects
from autograder.session import StudentRaised
from autograder.suites.a1_attention.inputs import build_mha, expect_matches, grads_of
from autograder.suites.common import (
    FLOATS,
    PROJECTIONS,
    dtype_name,
    expect_deterministic,
    expect_keeps_dtype_device_input,
    param_grads,
    torch_mha,
    torch_mha_grads,
)


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
        module, _ = build_mha(ctx, d_model, n_heads)
        x = ctx.randn(B, T, d_model)
        what = f"MultiHeadAttention({d_model}, {n_heads}) on x of shape {(B, T, d_model)}"
        expect_tensor(ctx.forward(module, x).value, what, shape=(B, T, d_model))


@hidden("MultiHeadAttention", points=3, group="numerics")
def test_mha_matches_nn_multihead_attention(ctx):
    """matches nn.MultiheadAttention with the same weights (float64)"""
    # (24, 3) first: with d_head != n_heads and d_head**2 != d_model, no two wrong scales or head layouts coincide
    for d_model, n_heads, bias in [(24, 3, True), (16, 4, True), (16, 4, False)]:
        module, state = build_mha(ctx, d_model, n_heads, bias=bias)
        x = ctx.randn(2, 6, d_model)
        what = f"MultiHeadAttention({d_model}, {n_heads}, bias={bias}) output"
        got = ctx.forward(module, x).value
        expect_tensor(got, f"{what} for a float64 module and input", dtype=torch.float64)
        with torch.no_grad():
            pytorch = torch_mha(state, n_heads)(x, x, x, need_weights=False)[0]
        expect_matches(got, reference.multi_head_attention(state, x, n_heads=n_heads), pytorch, what,
                       dtype=torch.float64, suspects=mha_suspects(state, x, n_heads),
                       hint="Project, split heads, attend per head, merge heads, then apply out_proj")


@hidden("MultiHeadAttention", points=1, group="numerics")
def test_mha_matches_in_float32(ctx):
    """matches the float64 reference within float32 tolerance"""
    module, state = build_mha(ctx, 16, 2, dtype=torch.float32)
    x = ctx.randn(3, 5, 16, dtype=torch.float32)
    expect_close(ctx.forward(module, x).value, reference.multi_head_attention(state, x, n_heads=2),
                 "float32 MultiHeadAttention output", **tolerance(torch.float32, 10))


@hidden("MultiHeadAttention", points=1, group="properties")
def test_mha_is_permutation_equivariant(ctx):
    """without positions, permuting the sequence permutes the output"""
    module, _ = build_mha(ctx, 8, 2)
    x, perm = ctx.randn(2, 6, 8), ctx.permutation(6)
    out = expect_tensor(ctx.forward(module, x).value, "MultiHeadAttention output", shape=(2, 6, 8))
    expect_close(ctx.forward(module, x[:, perm]).value, out[:, perm], "output on the permuted sequence",
                 **tolerance(torch.float64), hint=guess("Does something mix positions other than attention?"))


@hidden("MultiHeadAttention", points=3, group="gradients")
def test_mha_gradients_match(ctx):
    """gradients w.r.t. the input and every parameter match nn.MultiheadAttention's"""
    module, state = build_mha(ctx, 12, 3)
    x, g = ctx.randn(2, 5, 12), ctx.randn(2, 5, 12)
    result = ctx.forward(module, x, grad={"wrt": [0], "grad_outputs": [g]})
    expect_no_backward_error(result, "MultiHeadAttention")
    names = list(state)
    want_x, *want_params = grads_of(
        lambda x, *weights: reference.multi_head_attention(dict(zip(names, weights)), x, n_heads=3),
        (x, *state.values()), (g,))
    want = dict(zip(names, want_params))
    twin, x64 = torch_mha(state, 3), x.clone().requires_grad_(True)
    autodiff.backward(twin(x64, x64, x64, need_weights=False)[0], g)
    pytorch = torch_mha_grads(twin)
    expect_matches(result.input_grads[0], want_x, x64.grad, "d loss / d x", dtype=torch.float64)
    for name, got in param_grads(result, [f"{p}.{kind}" for p in PROJECTIONS for kind in ("weight", "bias")]).items():
        expect_matches(got, want[name], pytorch[name], f"gradient of {name}", dtype=torch.float64)


@hidden("MultiHeadAttention", points=1, group="hygiene")
def test_mha_keeps_dtype_device_and_input(ctx):
    """keeps dtype and device, leaves x unmodified, is deterministic in eval()"""
    for dtype in FLOATS:
        module, _ = build_mha(ctx, 8, 2, dtype=dtype)
        x = ctx.randn(2, 4, 8, dtype=dtype)
        first = ctx.forward(module, x)
        expect_keeps_dtype_device_input(ctx, first, x, f"the output of a {dtype_name(dtype)} MultiHeadAttention", dtype)
        expect_deterministic(ctx.forward(module, x), first, "forward")
