"""Known-wrong learning-rate schedules, ReZero blocks, ResiDual stacks and GPT-2 initialisations, keyed by the bug.

Each ``*_suspects`` function takes an exercise's inputs as ``autograder/reference.py`` does and returns, in float64,
what plausible wrong implementations compute from them, keyed by a description of the bug and its fix. The hidden
suite passes them to ``checks.expect_close(..., suspects=)``; the release's visible checks call ``matching_bug`` on
them, so a student reads "Your result matches <description>" before and after submitting.

References: Loshchilov & Hutter (2017) for the cosine schedule; Bachlechner et al., "ReZero is All You Need" (2020);
Xie et al., "ResiDual: Transformer with Dual Residual Connections" (2023); Radford et al. (2019) and nanoGPT's
``_init_weights`` for GPT-2's initialisation.
"""

from __future__ import annotations

import math

import torch

from autograder import reference as R
from autograder.known_bugs import matching_bug  # noqa: F401  (the visible checks import it from here)
from autograder.reference import sub

# --- lr_schedule ------------------------------------------------------------------------------------


def _cosine(step, max_lr, min_lr, start, length):
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * (step - start) / length))


def schedule_suspects(max_lr: float, warmup_steps: int, total_steps: int, min_lr: float, steps) -> dict:
    """The learning rates of ``steps`` under wrong schedules, as float64 tensors."""
    W, N = warmup_steps, total_steps

    def rates(rule) -> torch.Tensor:
        return torch.tensor([float(rule(s)) for s in steps], dtype=torch.float64)

    def right_after_warmup(s):
        return R.lr_schedule(s, max_lr, W, N, min_lr)

    def warm(rule):  # a wrong warm-up, the rest right
        return lambda s: rule(s) if s < W else right_after_warmup(s)

    def decay(rule):  # the right warm-up, a wrong decay
        return lambda s: right_after_warmup(s) if s < W else rule(s)

    suspects = {}
    if W > 0:
        suspects["a warm-up off by one step, max_lr * step / warmup_steps: step 0 gets a rate of 0 and the last "
                 "warm-up step only max_lr * (warmup_steps - 1) / warmup_steps"] = rates(warm(lambda s: max_lr * s / W))
        suspects["a warm-up of warmup_steps + 1 steps, max_lr * (step + 1) / (warmup_steps + 1): the last warm-up "
                 "step should reach max_lr"] = rates(warm(lambda s: max_lr * (s + 1) / (W + 1)))
    if N > W:
        suspects["a cosine over total_steps instead of total_steps - warmup_steps: the rate never reaches min_lr "
                 "by total_steps"] = rates(decay(lambda s: min_lr if s >= N else _cosine(s, max_lr, min_lr, W, N)))
        suspects["a cosine down to 0 instead of min_lr: "
                 "min_lr + 0.5 * (max_lr - min_lr) * (1 + cos(pi * progress))"] = \
            rates(decay(lambda s: min_lr if s >= N else _cosine(s, max_lr, 0.0, W, N - W)))
        suspects["a cosine that goes on after total_steps (the rate rises again): from total_steps on it stays at "
                 "min_lr"] = rates(decay(lambda s: _cosine(s, max_lr, min_lr, W, N - W)))
        suspects["a linear decay instead of the cosine"] = \
            rates(decay(lambda s: min_lr if s >= N else max_lr - (max_lr - min_lr) * (s - W) / (N - W)))
        suspects["a cosine whose progress is measured from step 0, (step / total_steps): it should start at the end "
                 "of the warm-up, (step - warmup_steps) / (total_steps - warmup_steps)"] = \
            rates(decay(lambda s: min_lr if s >= N else _cosine(s, max_lr, min_lr, 0, N)))
    return suspects


# --- ReZeroBlock ------------------------------------------------------------------------------------

def rezero_suspects(state: dict, x: torch.Tensor, mask=None, *, n_heads: int) -> dict:
    """ReZeroBlock.forward done wrongly, from ReZeroBlock's ``state`` (attn.*, ffn.*, alpha)."""
    x, alpha = x.double(), state["alpha"].double()

    def attn(h):
        return R.multi_head_attention(sub(state, "attn."), h, mask=mask, n_heads=n_heads)

    def ffn(h):
        return R.feed_forward(sub(state, "ffn."), h)

    h = x + alpha * attn(x)
    return {
        "alpha on the attention branch only: both branches are scaled, x + alpha * ffn(x) too": h + ffn(h),
        "alpha on the FFN branch only: both branches are scaled, x + alpha * attn(x) too": (x + attn(x)) + alpha * ffn(
            x + attn(x)),
        "the FFN reading the block's input instead of the stream after attention (a parallel block)":
            h + alpha * ffn(x),
        "the branches without their residual connection, alpha * attn(x) instead of x + alpha * attn(x)":
            alpha * ffn(alpha * attn(x)),
        "alpha applied to the whole stream, alpha * (x + attn(x)), instead of to the branch only":
            alpha * (alpha * (x + attn(x)) + ffn(alpha * (x + attn(x)))),
    }


# --- ResiDual ---------------------------------------------------------------------------------------

def residual_suspects(state: dict, x: torch.Tensor, mask=None, *, n_heads: int) -> dict:
    """ResiDual.forward done wrongly, from ResiDual's ``state`` (blocks.<i>.*, norm_dual.*)."""
    x = x.double()
    n_layers = len({name.split(".")[1] for name in state if name.startswith("blocks.")})
    blocks = [sub(state, f"blocks.{i}.") for i in range(n_layers)]
    norm_dual = sub(state, "norm_dual.")

    def run(dual, per_layer_norm=False, normalised_outputs=False):
        h = x
        for block in blocks:
            a = R.multi_head_attention(sub(block, "attn."), h, mask=mask, n_heads=n_heads)
            h = R.layer_norm(sub(block, "norm1."), h + a)
            dual = dual + (h if normalised_outputs else a)
            f = R.feed_forward(sub(block, "ffn."), h)
            h = R.layer_norm(sub(block, "norm2."), h + f)
            dual = dual + (h if normalised_outputs else f)
            if per_layer_norm:
                dual = R.layer_norm(norm_dual, dual)
        return h, dual

    h, dual = run(x)
    zero_h, zero_dual = run(torch.zeros_like(x))
    per_h, per_dual = run(x, per_layer_norm=True)
    norm_h, norm_dual_stream = run(x, normalised_outputs=True)
    return {
        "a dual stream that is never normalised, x + dual: normalise it once, at the end, x + norm_dual(dual)":
            h + dual,
        "the dual stream normalised in every layer: it sums raw sublayer outputs and is normalised once, at the end":
            per_h + per_dual,
        "a dual stream that starts at 0: it starts at the input, dual = x": zero_h + R.layer_norm(norm_dual, zero_dual),
        "the Post-LN stream alone: the output is x + norm_dual(dual)": h,
        "norm_dual(dual) alone: the output adds the Post-LN stream, x + norm_dual(dual)": R.layer_norm(norm_dual, dual),
        "a dual stream that adds the normalised stream after each sublayer instead of the sublayer's raw output":
            norm_h + R.layer_norm(norm_dual, norm_dual_stream),
    }


# --- gpt2_init_ -------------------------------------------------------------------------------------

def init_std_suspects(n_layers: int) -> dict[str, tuple[float, float]]:
    """(std of the other Linear weights, std of the residual projections) of wrong GPT-2 initialisations."""
    right = 0.02 / math.sqrt(2 * n_layers)
    return {
        "the residual projections at std 0.02 like every other weight: scale attn.out_proj and ffn.down to "
        "0.02 / sqrt(2 * n_layers)": (0.02, 0.02),
        "0.02 / sqrt(n_layers) instead of 0.02 / sqrt(2 * n_layers): there are two residual projections per layer":
            (0.02, 0.02 / math.sqrt(n_layers)),
        "0.02 / sqrt(2 * n_layers) for every Linear: only the residual projections (attn.out_proj, ffn.down) are "
        "scaled down": (right, right),
        "0.02 / (2 * n_layers) instead of 0.02 / sqrt(2 * n_layers)": (0.02, 0.02 / (2 * n_layers)),
        "std 0.02**2 = 0.0004: nn.init.normal_ takes the standard deviation, std=0.02": (0.0004, 0.0004 * right / 0.02),
    }


def matching_init_bug(other_std: float, projection_std: float, n_layers: int, rel: float = 0.1) -> str | None:
    """The wrong initialisation whose two standard deviations both lie within ``rel`` of the measured ones."""
    for bug, (other, projection) in init_std_suspects(n_layers).items():
        if abs(other_std - other) <= rel * other and abs(projection_std - projection) <= rel * projection:
            return bug
    return None
