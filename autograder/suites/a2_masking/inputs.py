"""Seeded inputs of the a2_masking tests, and the expected values: ``autograder/reference.py``, cross-checked.

Masks passed to attention are built here from the reference, never with the student's ``causal_mask`` or
``padding_mask``, so one bug does not cascade. Every expected value is the reference's (float64); where PyTorch
has the same computation (``torch.tril`` with the bottom-right offset, ``torch.softmax`` of ``-inf``-filled scores,
``F.scaled_dot_product_attention``, ``nn.MultiheadAttention``) it cross-checks the reference on every input, and
a disagreement is the grader's bug (an internal error), never the student's. PyTorch returns NaN (or, in recent
versions, zeros) for a query with no visible key, so the cross-check skips those rows: there the course
convention (zero weights, zero output, finite gradients) is the reference's alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from autograder import autodiff, reference
from autograder.checks import fail, tolerance
from autograder.suites import common
from autograder.suites.common import PROJECTIONS, load_weights

# --- inputs --------------------------------------------------------------------------------


def random_mask(ctx, *shape, p_visible=0.6, keep_first=True) -> torch.Tensor:
    """A random bool mask; with keep_first every row keeps key 0 visible (no fully masked row)."""
    mask = torch.rand(*shape, generator=ctx.generator) < p_visible
    if keep_first:
        mask[..., 0] = True
    return mask


def qkv(ctx, batch=(2, 3), t_q=5, t_k=7, d_k=8, d_v=6, dtype=torch.float64):
    """q (*batch, t_q, d_k), k (*batch, t_k, d_k), v (*batch, t_k, d_v), drawn in that order."""
    return (ctx.randn(*batch, t_q, d_k, dtype=dtype), ctx.randn(*batch, t_k, d_k, dtype=dtype),
            ctx.randn(*batch, t_k, d_v, dtype=dtype))


def rows_with_visible_key(mask: torch.Tensor, shape) -> torch.Tensor:
    """(..., T_q, 1): True where the query has at least one visible key."""
    return mask.expand(shape).any(dim=-1, keepdim=True)


def causal(t_q: int, t_k: int) -> torch.Tensor:
    """The reference's causal mask (bottom-right aligned), checked against ``torch.tril`` with the diagonal moved
    right by ``t_k - t_q`` (what PyTorch's ``causal_lower_right`` materialises; importing that module would load
    ``torch._dynamo``, about 2.5 s of the grader's CPU)."""
    mask = reference.causal_mask(t_q, t_k)
    _agree(mask, torch.ones(t_q, t_k, dtype=torch.bool).tril(t_k - t_q), f"causal_mask({t_q}, {t_k})")
    return mask


def padding(lengths, t: int) -> torch.Tensor:
    """The reference's (B, 1, 1, T) padding mask for a list or tensor of lengths."""
    return reference.padding_mask(torch.as_tensor(lengths), t)


# --- expected values -----------------------------------------------------------------------


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """reference.masked_softmax, checked against torch.softmax of -inf-filled scores where a key is visible."""
    want = reference.masked_softmax(scores, mask, dim)
    theirs = torch.softmax(scores.detach().double().masked_fill(~mask, -math.inf), dim=dim)
    visible = mask.expand(want.shape).any(dim=dim, keepdim=True).expand(want.shape)
    _agree(want.detach()[visible], theirs[visible], "the masked softmax")
    return want


def attention(q, k, v, mask=None) -> tuple[torch.Tensor, torch.Tensor]:
    """reference.scaled_dot_product_attention, checked against F.scaled_dot_product_attention (attn_mask=mask)."""
    out, weights = reference.scaled_dot_product_attention(q, k, v, mask)
    q, k, v = (t.detach().double() for t in (q, k, v))
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    rows = slice(None) if mask is None else rows_with_visible_key(mask, weights.shape).expand(out.shape)
    _agree(out.detach()[rows], theirs[rows], "masked attention")
    return out, weights


def mha(state: dict, x: torch.Tensor, mask, n_heads: int) -> torch.Tensor:
    """reference.multi_head_attention, checked against nn.MultiheadAttention at the queries that see a key."""
    out = reference.multi_head_attention(state, x, mask=mask, n_heads=n_heads)
    B, T, _ = x.shape
    seen = slice(None) if mask is None else mask.expand(B, n_heads, T, T).any(-1).all(1)  # (B, T)
    _agree(out.detach()[seen], torch_mha_output(state, x.detach(), mask, n_heads)[0][seen], "multi-head attention")
    return out


def mha_gradients(state: dict, x: torch.Tensor, mask, n_heads: int, g: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """The reference's gradients of <output, g> w.r.t. x and every parameter (keyed as in ``state``); when every
    query sees a key, nn.MultiheadAttention's gradients cross-check them."""
    x_ours = x.detach().double().requires_grad_(True)
    ours = {name: w.detach().clone().requires_grad_(True) for name, w in state.items()}
    autodiff.backward(reference.multi_head_attention(ours, x_ours, mask=mask, n_heads=n_heads), g)
    B, T, _ = x.shape
    if mask is None or mask.expand(B, n_heads, T, T).any(-1).all():
        x_theirs = x.detach().double().requires_grad_(True)
        out, module = torch_mha_output(state, x_theirs, mask, n_heads)
        autodiff.backward(out, g)
        theirs = {f"{p}.weight": w for p, w in zip(PROJECTIONS, module.in_proj_weight.grad.chunk(3))}  # q, k, v
        theirs["out_proj.weight"] = module.out_proj.weight.grad
        if module.in_proj_bias is not None:
            theirs.update({f"{p}.bias": b for p, b in zip(PROJECTIONS, module.in_proj_bias.grad.chunk(3))})
            theirs["out_proj.bias"] = module.out_proj.bias.grad
        _agree(x_ours.grad, x_theirs.grad, "d loss / d x of multi-head attention")
        for name, w in ours.items():
            _agree(w.grad, theirs[name], f"the gradient of {name}")
    return x_ours.grad, {name: w.grad for name, w in ours.items()}


def torch_mha_output(state: dict, x: torch.Tensor, mask, n_heads: int) -> tuple[torch.Tensor, nn.MultiheadAttention]:
    """(output, module) of a float64 nn.MultiheadAttention holding the weights of ``state``, run with our mask.

    Its boolean masks mark BLOCKED pairs, one (T, T) mask per (batch, head): hence the ~ and the expansion.
    """
    module = common.torch_mha(state, n_heads)
    x = x.double()
    if mask is None:
        return module(x, x, x, need_weights=False)[0], module
    B, T, _ = x.shape
    blocked = (~mask).expand(B, n_heads, T, T).reshape(B * n_heads, T, T)
    return module(x, x, x, attn_mask=blocked, need_weights=False)[0], module


def _agree(ours: torch.Tensor, theirs: torch.Tensor, what: str) -> None:
    """reference.py and PyTorch agree, or the grader is wrong: an internal error, never a student's failure."""
    same = torch.equal(ours, theirs) if ours.dtype == torch.bool else torch.allclose(
        ours, theirs.to(ours.dtype), **tolerance(torch.float64))
    if not same:
        raise AssertionError(f"autograder/reference.py and PyTorch disagree on {what}")


# --- the student's MultiHeadAttention --------------------------------------------------------


def build_mha(ctx, d_model: int, n_heads: int, bias: bool = True, dtype=torch.float64):
    """The student's module in eval() mode and ``dtype``, holding random weights; returns (module, float64 state)."""
    module = ctx.construct("MultiHeadAttention", d_model, n_heads, bias=bias)
    expected = reference.mha_shapes(d_model, bias)
    got = {name: tuple(t.shape) for name, t in module.parameters.items()}
    if got != expected:
        fail(f"MultiHeadAttention({d_model}, {n_heads}, bias={bias}) has parameters {sorted(got)}, "
             f"expected {sorted(expected)}",
             "Keep the given __init__: four nn.Linear(d_model, d_model, bias=bias) named q_proj, k_proj, v_proj, "
             "out_proj")
    # drawn weights first, then biases (the order every regrade keeps), N(0, 1/d_model)
    names = [f"{p}.{kind}" for kind in ("weight", "bias") for p in PROJECTIONS if f"{p}.{kind}" in expected]
    state = {name: ctx.randn(*expected[name], scale=1 / math.sqrt(d_model)) for name in names}
    module.set_mode(train=False, dtype=dtype)
    load_weights(module, {k: v.to(dtype) for k, v in state.items()})
    return module, state
