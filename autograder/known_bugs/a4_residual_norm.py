"""Known-wrong LayerNorm, RMSNorm and Transformer blocks, keyed by what the bug is.

Each ``*_suspects`` function takes an exercise's inputs as ``autograder/reference.py`` does (a module as its state
dict, keyed as the students' modules name their parameters) and returns, in float64, what plausible wrong
implementations compute from them, keyed by a description of the bug and its fix. ``matching_bug`` names the one a
result matches. The hidden suite passes the dicts to ``checks.expect_close(..., suspects=...)``; the release's
visible checks import the same functions, so a student reads "your result matches <bug>" before submitting.

References: Ba, Kiros & Hinton, "Layer Normalization" (2016); Zhang & Sennrich, "Root Mean Square Layer
Normalization" (2019); Vaswani et al., "Attention Is All You Need" (2017) for the Post-LN block; Xiong et al.,
"On Layer Normalization in the Transformer Architecture" (2020) for the Pre-LN block.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from autograder import reference
from autograder.known_bugs import matching_bug  # noqa: F401  (the visible checks import it from here)
from autograder.reference import EPS, sub

# --- LayerNorm ----------------------------------------------------------------------------------

def standardised(x: torch.Tensor, dims, eps: float, correction: int = 0) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) with the statistics over ``dims``; ``correction=1`` is the unbiased variance."""
    mean = x.mean(dims, keepdim=True)
    return (x - mean) / torch.sqrt(x.var(dims, correction=correction, keepdim=True) + eps)


def layer_norm_suspects(state: dict, x: torch.Tensor, eps: float = EPS) -> dict[str, torch.Tensor]:
    """What wrong layer norms compute from LayerNorm's ``state`` (weight and bias, or empty) and ``x``."""
    x = x.double()
    d_model = x.shape[-1]
    weight = state["weight"].double() if state else torch.ones(d_model, dtype=torch.float64)
    bias = state["bias"].double() if state else torch.zeros(d_model, dtype=torch.float64)
    var = x.var(-1, correction=0, keepdim=True)
    suspects = {}
    if d_model > 1:
        suspects["the unbiased variance (divided by d_model - 1): LayerNorm divides by d_model, as "
                 "x.var(dim=-1, unbiased=False)"] = standardised(x, -1, eps, correction=1) * weight + bias
    suspects["eps outside the square root, sqrt(var) + eps: it belongs inside, sqrt(var + eps)"] = \
        (x - x.mean(-1, keepdim=True)) / (var.sqrt() + eps) * weight + bias
    if eps != EPS:
        suspects[f"a hard-coded eps of 1e-5, not the eps={eps} the module was built with"] = \
            reference.layer_norm(state, x, EPS)
    if state:
        plain = reference.layer_norm({}, x, eps)
        suspects["a layer norm without weight and bias: forward must apply * weight + bias"] = plain
        suspects["a layer norm without the bias: forward must add + bias after * weight"] = plain * weight
        suspects["weight and bias swapped (x_hat * bias + weight)"] = \
            reference.layer_norm({"weight": bias, "bias": weight}, x, eps)
    if x.dim() >= 3:
        suspects["statistics over dimension 1 (the positions) instead of the last dimension (the features)"] = \
            standardised(x, 1, eps) * weight + bias
        suspects["statistics over each whole sequence (every dimension but the first) instead of over each "
                 "token's features"] = standardised(x, tuple(range(1, x.dim())), eps) * weight + bias
    suspects["statistics over the whole tensor instead of over each token's features"] = \
        standardised(x, tuple(range(x.dim())), eps) * weight + bias
    return suspects


# --- RMSNorm ------------------------------------------------------------------------------------

def rms_norm_suspects(state: dict, x: torch.Tensor, eps: float = EPS) -> dict[str, torch.Tensor]:
    """What wrong RMS norms compute from RMSNorm's ``state`` (its weight) and ``x``."""
    x, weight = x.double(), state["weight"].double()
    mean_square = x.pow(2).mean(-1, keepdim=True)
    x32, weight32 = x.to(torch.float32), weight.to(torch.float32)
    suspects = {
        "an RMSNorm that subtracts the mean (that is LayerNorm): RMSNorm divides x itself by sqrt(mean(x**2) + eps)":
            reference.layer_norm({}, x, eps) * weight,
        "x divided by its standard deviation instead of its root mean square":
            x / torch.sqrt(x.var(-1, correction=0, keepdim=True) + eps) * weight,
        "eps outside the square root, sqrt(mean(x**2)) + eps: it belongs inside":
            x / (mean_square.sqrt() + eps) * weight,
        "x divided by its Euclidean norm sqrt(sum(x**2)), not its root mean square sqrt(mean(x**2))":
            x / torch.sqrt(x.pow(2).sum(-1, keepdim=True) + eps) * weight,
        "an RMSNorm without its weight: forward must multiply by self.weight": x / torch.sqrt(mean_square + eps),
        "a computation in float32: a float64 input must stay float64 throughout (cast to float32 only for float16 "
        "and bfloat16 inputs)": (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps) * weight32).double(),
    }
    if eps != EPS:
        suspects[f"a hard-coded eps of 1e-5, not the eps={eps} the module was built with"] = \
            reference.rms_norm(state, x, EPS)
    if x.dim() >= 3:
        suspects["the mean of squares over dimension 1 (the positions) instead of the last dimension"] = \
            x / torch.sqrt(x.pow(2).mean(1, keepdim=True) + eps) * weight
    return suspects


# --- TransformerBlock ----------------------------------------------------------------------------

Sublayer = Callable[[torch.Tensor], torch.Tensor]


class Sublayers(NamedTuple):
    """A block's four parts as float64 functions of the stream, from the block's state dict."""

    norm1: Sublayer
    attn: Sublayer
    norm2: Sublayer
    ffn: Sublayer


def sublayers(state: dict, mask=None, *, n_heads: int, activation: str = "gelu", norm: str = "layer") -> Sublayers:
    """norm1, attn (with ``mask``), norm2 and ffn of TransformerBlock's ``state``, as reference.transformer_block
    uses them."""
    normalise = reference.NORMS[norm]
    return Sublayers(lambda h: normalise(sub(state, "norm1."), h),
                     lambda h: reference.multi_head_attention(sub(state, "attn."), h, mask=mask, n_heads=n_heads),
                     lambda h: normalise(sub(state, "norm2."), h),
                     lambda h: reference.feed_forward(sub(state, "ffn."), h, activation))


# Wrong wirings of the four parts, each as a student wrote it.

def residual_on_normalised(s: Sublayers, x):
    """x = norm1(x); x = x + attn(x); x = norm2(x); x = x + ffn(x): the residual path is normalised too."""
    x = s.norm1(x)
    x = x + s.attn(x)
    x = s.norm2(x)
    return x + s.ffn(x)


def pre_ln_norm1_twice(s: Sublayers, x):
    """x = x + attn(norm1(x)); x = x + ffn(norm1(x)): norm2 is never used."""
    x = x + s.attn(s.norm1(x))
    return x + s.ffn(s.norm1(x))


def pre_ln_without_ffn_residual(s: Sublayers, x):
    """x = x + attn(norm1(x)); x = ffn(norm2(x)): the FFN replaces the stream instead of adding to it."""
    return s.ffn(s.norm2(x + s.attn(s.norm1(x))))


def pre_ln_without_attn_residual(s: Sublayers, x):
    """x = attn(norm1(x)); x = x + ffn(norm2(x)): attention replaces the stream instead of adding to it."""
    x = s.attn(s.norm1(x))
    return x + s.ffn(s.norm2(x))


def parallel(s: Sublayers, x):
    """Attention and the FFN both read the block's input (GPT-J's parallel block), which Pre-LN is not."""
    return x + s.attn(s.norm1(x)) + s.ffn(s.norm2(x))


def post_ln_norm1_twice(s: Sublayers, x):
    """x = norm1(x + attn(x)); x = norm1(x + ffn(x)): norm2 is never used."""
    x = s.norm1(x + s.attn(x))
    return s.norm1(x + s.ffn(x))


def post_ln_norm_on_branch(s: Sublayers, x):
    """x = x + norm1(attn(x)); x = x + norm2(ffn(x)): the branch is normalised, not the sum."""
    x = x + s.norm1(s.attn(x))
    return x + s.norm2(s.ffn(x))


def post_ln_without_ffn_residual(s: Sublayers, x):
    """x = norm1(x + attn(x)); x = norm2(ffn(x)): the FFN replaces the stream instead of adding to it."""
    return s.norm2(s.ffn(s.norm1(x + s.attn(x))))


def block_suspects(state: dict, x: torch.Tensor, mask=None, *, n_heads: int, norm_first: bool,
                   activation: str = "gelu", norm: str = "layer") -> dict[str, torch.Tensor]:
    """What wrongly wired blocks compute from TransformerBlock's ``state``, ``x`` and ``mask`` (True = may attend)."""
    x = x.double()
    s = sublayers(state, mask, n_heads=n_heads, activation=activation, norm=norm)

    def block(norm_first=norm_first, activation=activation, mask=mask):
        return reference.transformer_block(state, x, mask, n_heads=n_heads, norm_first=norm_first,
                                           activation=activation, norm=norm)

    other = "relu" if activation == "gelu" else "gelu"
    suspects = {}
    if mask is not None:
        suspects["the mask ignored: pass mask on to self.attn(h, mask=mask)"] = block(mask=None)
    if norm_first:
        suspects.update({
            "Post-LN (x = norm1(x + attn(x)); x = norm2(x + ffn(x))), but norm_first=True asks for Pre-LN":
                block(norm_first=False),
            "the residual added to the normalised x (x = norm1(x); x = x + attn(x)) instead of to x itself":
                residual_on_normalised(s, x),
            "norm1 used before the FFN as well (norm2 is never used)": pre_ln_norm1_twice(s, x),
            "no residual connection around the FFN (x = ffn(norm2(x)) instead of x = x + ffn(norm2(x)))":
                pre_ln_without_ffn_residual(s, x),
            "no residual connection around attention (x = attn(norm1(x)) instead of x = x + attn(norm1(x)))":
                pre_ln_without_attn_residual(s, x),
            "attention and the FFN applied side by side to the same x (x + attn(norm1(x)) + ffn(norm2(x)))":
                parallel(s, x),
        })
    else:
        suspects.update({
            "Pre-LN (x = x + attn(norm1(x)); x = x + ffn(norm2(x))), but norm_first=False asks for Post-LN":
                block(norm_first=True),
            "the residual added to the normalised x, Pre-LN style (x = norm1(x); x = x + attn(x))":
                residual_on_normalised(s, x),
            "norm1 used after the FFN as well (norm2 is never used)": post_ln_norm1_twice(s, x),
            "the norm applied to the branch output (x = x + norm1(attn(x))) instead of to the sum, "
            "x = norm1(x + attn(x))":
                post_ln_norm_on_branch(s, x),
            "no residual connection around the FFN (x = norm2(ffn(x)) instead of x = norm2(x + ffn(x)))":
                post_ln_without_ffn_residual(s, x),
        })
    suspects[f"a {other.upper()} feed-forward network, but activation={activation!r}"] = block(activation=other)
    return suspects
