"""Known-wrong implementations of a2_masking: causal and padding masks, the masked softmax, masked attention.

Each ``*_suspects`` function takes an exercise's inputs and returns what plausible wrong implementations return,
keyed by the bug's description: the words after "your result matches". Masks are bool; everything else is
float64, built from ``autograder/reference.py`` so that a suspect differs from the reference only by its bug.
The hidden suite passes these to ``checks.expect_close(..., suspects=...)``; the release's visible checks call
``matching_bug`` on the same dicts, when the course package is importable.

Masking as in Vaswani et al., "Attention Is All You Need" (2017), §3.2.3: True = may attend.
"""

from __future__ import annotations

import math

import torch

from autograder import reference
from autograder.known_bugs import matching_bug  # noqa: F401  (the visible checks import it from here)

# One bug, one sentence: the same words for the masked softmax, attention and multi-head attention.
IGNORES_MASK = "a softmax that ignores the mask"
INVERTED_MASK = ("an inverted mask (True treated as blocked, the convention of nn.MultiheadAttention); "
                 "here True means 'may attend'")
MASK_AFTER_SOFTMAX = ("weights multiplied by the mask after the softmax, without renormalising: block the scores "
                      "before normalising")


# --- masks ---------------------------------------------------------------------------------

def causal_mask_suspects(T_q: int, T_k: int | None = None) -> dict[str, torch.Tensor]:
    """Wrong causal masks of shape (T_q, T_k): inverted, diagonal blocked, upper triangle, top-left aligned."""
    T_k = T_q if T_k is None else T_k
    ones = torch.ones(T_q, T_k, dtype=torch.bool)
    suspects = {
        "an inverted mask: True marks the blocked future, but True must mean 'may attend'":
            ~reference.causal_mask(T_q, T_k),
        "a mask with the diagonal blocked (j < i instead of j <= i: tril(diagonal=-1) or ~triu()); "
        "a token may attend to itself": ones.tril(diagonal=T_k - T_q - 1),
        "the upper triangle (keys j >= i): query i is row i and may attend to keys j <= i":
            ones.triu(diagonal=T_k - T_q),
    }
    if T_k != T_q:  # with T_k == T_q the two alignments agree
        suspects["the top-left alignment (j <= i): with T_k > T_q the queries are the LAST T_q positions, "
                 "so query i may attend to keys j <= i + (T_k - T_q)"] = ones.tril()
    return suspects


def padding_mask_suspects(lengths: torch.Tensor, T: int) -> dict[str, torch.Tensor]:
    """Wrong (B, 1, 1, T) padding masks: inverted (nn.MultiheadAttention's key_padding_mask), off by one either way."""
    positions = torch.arange(T, device=lengths.device)[None, :]  # (1, T) against lengths (B, 1)
    return {
        "an inverted mask: True marks the padding (the key_padding_mask convention of nn.MultiheadAttention), "
        "but True must mean 'may attend'": ~reference.padding_mask(lengths, T),
        "positions t <= lengths[b]: off by one (positions start at 0)": (positions <= lengths[:, None])[:, None, None],
        "positions t < lengths[b] - 1: off by one": (positions < lengths[:, None] - 1)[:, None, None],
    }


# --- the masked softmax and attention --------------------------------------------------------

def masked_softmax_suspects(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> dict[str, torch.Tensor]:
    """Wrong masked softmaxes: the mask ignored, inverted, or applied after the softmax; always over the last dim."""
    plain = reference.softmax(scores, dim)
    return {
        IGNORES_MASK: plain,
        INVERTED_MASK: reference.masked_softmax(scores, ~mask, dim),
        MASK_AFTER_SOFTMAX: plain * mask,  # the visible weights no longer sum to 1
        "a masked softmax over the last dimension whatever `dim` is": reference.masked_softmax(scores, mask, -1),
    }


def _attention_weight_suspects(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    scores = q.double() @ k.double().transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T_q, T_k)
    weights = masked_softmax_suspects(scores, mask)
    del weights["a masked softmax over the last dimension whatever `dim` is"]  # attention always uses the last dim
    return weights


def attention_suspects(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       mask: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(outputs, weights) of attention whose masked softmax has one of the bugs above, keyed alike."""
    weights = _attention_weight_suspects(q, k, mask)
    return {bug: w @ v.double() for bug, w in weights.items()}, weights


def mha_suspects(state: dict, x: torch.Tensor, mask: torch.Tensor, n_heads: int) -> dict[str, torch.Tensor]:
    """MultiHeadAttention.forward (state keyed as the module's state dict) with each attention bug above; the mask
    ignored is said as "multi-head attention that ignores the mask": forward may simply not pass it on."""
    x = x.double()

    def heads(name: str) -> torch.Tensor:  # (B, T, d_model) -> (B, H, T, d_head)
        return reference.split_heads(reference.linear(reference.sub(state, f"{name}."), x), n_heads)

    q, k, v = heads("q_proj"), heads("k_proj"), heads("v_proj")
    out_proj = reference.sub(state, "out_proj.")
    names = {IGNORES_MASK: "multi-head attention that ignores the mask",
             INVERTED_MASK: "an inverted mask (True treated as blocked, the convention of nn.MultiheadAttention)"}
    return {names.get(bug, bug): reference.linear(out_proj, reference.merge_heads(w @ v))  # (B, H, T, d_head) @ ...
            for bug, w in _attention_weight_suspects(q, k, mask).items()}
