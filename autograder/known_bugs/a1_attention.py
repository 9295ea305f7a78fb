"""Known-wrong implementations of a1_attention's exercises, keyed by what the bug is.

Each ``*_suspects`` function takes an exercise's inputs and returns ``{description: the wrong result}`` in float64,
computed from the definition in ``autograder/reference.py`` with one thing done wrong. The hidden suite hands them
to ``checks.expect_close(..., suspects=...)``; the release's visible checks call ``matching_bug`` on a result that
failed, so "your result matches <description>" reads the same before and after submission.

Vaswani et al., "Attention Is All You Need" (2017), §3.2: scaled dot-product attention (§3.2.1) and multi-head
attention (§3.2.2).
"""

from __future__ import annotations

import math

import torch

from autograder import reference
from autograder.known_bugs import matching_bug  # noqa: F401  (the visible checks import it from here)

DEFAULT_DIM = "The default must be dim=-1 (the last dimension): def softmax(x, dim=-1)"


# --- softmax ---------------------------------------------------------------------------

def softmax_suspects(x: torch.Tensor, dim: int = -1) -> dict[str, torch.Tensor]:
    """softmax(x, dim) taken along every other dimension, or over the whole tensor at once."""
    n = x.dim()
    wrong = {f"a softmax over dim={d} (that is, dim={d + n}) instead of dim={dim}": reference.softmax(x, d)
             for d in range(-n, 0) if d != dim % n - n}
    whole = reference.softmax(x.flatten(), 0).reshape(x.shape)
    wrong["exp(x) / exp(x).sum() over the whole tensor, not along dim"] = whole
    return wrong


def softmax_default_dim_suspects(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """softmax(x) called without dim, normalised along another dimension than the last: a wrong default."""
    return {f"a softmax over dim={d}. {DEFAULT_DIM}": reference.softmax(x, d) for d in range(x.dim() - 1)}


# --- scaled dot-product attention -------------------------------------------------------

def _wrong_weightings(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> dict[str, torch.Tensor]:
    """Attention weights with the wrong scale, or normalised over the wrong axis."""
    d_k, d_v = q.shape[-1], v.shape[-1]
    scores = q.double() @ k.double().transpose(-2, -1)  # (..., T_q, T_k), unscaled
    wrong = {
        "attention without the 1/sqrt(d_k) scale": reference.softmax(scores),
        "attention scaled by 1/d_k instead of 1/sqrt(d_k)": reference.softmax(scores / d_k),
        "attention scaled by sqrt(d_k) (multiplied, not divided)": reference.softmax(scores * math.sqrt(d_k)),
        "a softmax over the query axis (dim=-2) instead of the key axis (dim=-1)":
            reference.softmax(scores / math.sqrt(d_k), -2),
    }
    if d_v != d_k:
        wrong["attention scaled by 1/sqrt(d_v) instead of 1/sqrt(d_k)"] = reference.softmax(scores / math.sqrt(d_v))
    return wrong


def attention_weights_suspects(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> dict[str, torch.Tensor]:
    """The weights of scaled_dot_product_attention(q, k, v) done wrong, transposed ones included."""
    _, weights = reference.scaled_dot_product_attention(q, k, v)
    return {**_wrong_weightings(q, k, v),
            "weights transposed: (..., T_k, T_q) instead of (..., T_q, T_k)": weights.transpose(-2, -1)}


def attention_output_suspects(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> dict[str, torch.Tensor]:
    """The output of scaled_dot_product_attention(q, k, v), weights @ v, for each wrong weighting."""
    return {bug: weights @ v.double() for bug, weights in _wrong_weightings(q, k, v).items()}


# --- split_heads -------------------------------------------------------------------------

def split_heads_suspects(x: torch.Tensor, n_heads: int) -> dict[str, torch.Tensor]:
    """split_heads(x, n_heads) of x (..., T, d_model) with the features dealt out to the heads wrongly."""
    *batch, T, d_model = x.shape
    d_head = d_model // n_heads
    x = x.double()
    return {
        "x.reshape(B, H, T, d_head): a reshape without the transpose": x.reshape(*batch, n_heads, T, d_head),
        "a layout where head h takes every H-th feature (view(B, T, d_head, H)), not a contiguous block":
            x.reshape(*batch, T, d_head, n_heads).movedim(-1, -3),  # (..., T, d_head, H) -> (..., H, T, d_head)
    }


# --- MultiHeadAttention ------------------------------------------------------------------

def mha_suspects(state: dict, x: torch.Tensor, n_heads: int) -> dict[str, torch.Tensor]:
    """MultiHeadAttention's output for x (..., T, d_model) with the weights ``state`` (as the module names them),
    one step done wrong."""
    d_model = x.shape[-1]
    q, k, v = (reference.linear(reference.sub(state, f"{p}."), x) for p in ("q_proj", "k_proj", "v_proj"))

    def out_proj(t):
        return reference.linear(reference.sub(state, "out_proj."), t)

    def heads(q, k, v, scale=None, n=n_heads):  # attention per head, heads still split: (..., n, T, d_model // n)
        split = [reference.split_heads(t, n) for t in (q, k, v)]
        return reference.scaled_dot_product_attention(*split, scale=scale)[0]

    wrong = {
        "multi-head attention without the output projection out_proj": reference.merge_heads(heads(q, k, v)),
        "a single head over all of d_model (heads never split)":
            out_proj(reference.scaled_dot_product_attention(q, k, v)[0]),
        "heads scaled by 1/sqrt(d_model) instead of 1/sqrt(d_head)":
            out_proj(reference.merge_heads(heads(q, k, v, scale=1 / math.sqrt(d_model)))),
        "heads merged by a reshape without the transpose": out_proj(heads(q, k, v).reshape(x.shape)),
        "values projected with k_proj instead of v_proj": out_proj(reference.merge_heads(heads(q, k, k))),
        "keys projected with q_proj instead of k_proj": out_proj(reference.merge_heads(heads(q, q, v))),
    }
    if d_model // n_heads != n_heads:
        wrong["d_model // n_heads heads of size n_heads (n_heads and d_head swapped in split_heads)"] = \
            out_proj(reference.merge_heads(heads(q, k, v, n=d_model // n_heads)))
    return wrong
