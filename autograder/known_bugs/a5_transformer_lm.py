"""Known-wrong implementations of a5_transformer_lm's exercises, keyed by what the bug is.

Each ``*_suspects`` function returns ``{description: what the wrong code gives}`` for the same inputs as the
right answer, in float64 (token ids stay int64). The hidden suite passes them to ``expect_close(..., suspects=)``;
the release's visible checks call ``matching_bug`` on them, so a student reads "Your result matches <description>"
before and after submitting. The right answers: ``autograder/reference.py`` (the model and its loss) and the
hidden suite's replays (a training step, greedy decoding and sampling, which reference.py does not hold).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from autograder import reference as R
from autograder.known_bugs import matching_bug  # noqa: F401  (the visible checks import it from here)

# --- TransformerLM ----------------------------------------------------------------------------------

LM_BUGS = {
    "no_final_norm": "the Pre-LN model without its final LayerNorm: norm_f is never applied before lm_head",
    "no_causal_mask": "a model without the causal mask: every position attends to the whole sequence",
    "upper_triangle":
        "a mask of the upper triangle (triu) instead of the lower (tril): positions attend to later tokens",
    "positions_after_blocks": "position embeddings added after the blocks instead of to the token embeddings",
    "no_positions": "a model that never adds the position embeddings",
    "positions_from_1": "position embeddings of positions 1 .. T instead of 0 .. T-1",
    "scaled_embeddings": "token embeddings multiplied by sqrt(d_model) (the exercise adds them unscaled)",
}
POST_LN_BUGS = {
    "post_ln_ignored": "Pre-LN blocks although norm_first=False: pass norm_first to every TransformerBlock",
    "post_ln_ignored_with_norm_f": "Pre-LN blocks and a final norm although norm_first=False",
}


def lm_suspects(state: dict, tokens: torch.Tensor, *, n_heads: int, norm_first: bool = True) -> dict:
    """Logits (B, T, vocab_size) of TransformerLMs with one known bug each; arguments as reference.transformer_lm's.

    Positions 1 .. T need T + 1 rows: that bug is left out when the position table has only T.
    """
    bugs = dict(LM_BUGS)
    if not norm_first:  # no final norm to forget; Pre-LN blocks instead
        del bugs["no_final_norm"]
        bugs.update(POST_LN_BUGS)
    T = tokens.shape[1]
    if R.lm_positions(state, T + 1, state["tok_emb.weight"].shape[1]).shape[0] <= T:
        del bugs["positions_from_1"]
    return {description: buggy_lm(state, tokens, bug, n_heads=n_heads, norm_first=norm_first)
            for bug, description in bugs.items()}


def buggy_lm(state: dict, tokens: torch.Tensor, bug: str, *, n_heads: int, norm_first: bool = True) -> torch.Tensor:
    """reference.transformer_lm (without padding) with the bug named by a key of LM_BUGS or POST_LN_BUGS."""
    T = tokens.shape[1]
    x = state["tok_emb.weight"].double()[tokens]  # (B, T) -> (B, T, d_model)
    d_model = x.shape[-1]
    if bug == "scaled_embeddings":
        x = x * math.sqrt(d_model)
    table = R.lm_positions(state, T + 1, d_model)  # (T + 1, d_model) when the model has that many positions
    positions = table[1:T + 1] if bug == "positions_from_1" else table[:T]
    if bug not in ("no_positions", "positions_after_blocks"):
        x = x + positions
    causal = R.causal_mask(T, device=tokens.device)  # (T, T), True on and below the diagonal
    mask = {"no_causal_mask": None, "upper_triangle": causal.T}.get(bug, causal)
    pre_ln = norm_first or bug in POST_LN_BUGS
    n_layers = len({name.split(".")[1] for name in state if name.startswith("blocks.")})
    for i in range(n_layers):
        x = R.transformer_block(R.sub(state, f"blocks.{i}."), x, mask, n_heads=n_heads, norm_first=pre_ln)
    if bug == "positions_after_blocks":
        x = x + positions
    if norm_first and bug != "no_final_norm":
        x = R.layer_norm(R.sub(state, "norm_f."), x)
    elif bug == "post_ln_ignored_with_norm_f":  # a Post-LN model has no norm_f parameters: a plain LayerNorm
        x = R.layer_norm({}, x)
    head = state.get("lm_head.weight", state["tok_emb.weight"])  # tied: the output layer is the embedding
    return x @ head.double().T  # (B, T, d_model) @ (d_model, V) -> (B, T, V)


def sinusoid_suspects(max_len: int, d_model: int) -> dict:
    """The pos_emb buffer of positions="sinusoidal", built wrongly."""
    return {"sinusoidal_positions(max_len + 1, d_model) without its first row":
            R.sinusoidal_positions(max_len + 1, d_model)[1:]}


# --- lm_loss ----------------------------------------------------------------------------------------

def loss_suspects(logits: torch.Tensor, tokens: torch.Tensor) -> dict:
    """lm_loss(logits, tokens) computed wrongly: the shift, the reduction, or what cross_entropy is given."""
    x = logits.double()
    B, _, V = x.shape
    predictions, targets = x[:, :-1].reshape(-1, V), tokens[:, 1:].reshape(-1)  # (B * (T-1), V), (B * (T-1),)
    return {
        "the loss without the shift: logits[:, t] scored against tokens[:, t], so the model learns to copy its input":
            F.cross_entropy(x.reshape(-1, V), tokens.reshape(-1)),
        "logits[:, 1:] scored against tokens[:, :-1]: the shift goes the wrong way":
            F.cross_entropy(x[:, 1:].reshape(-1, V), tokens[:, :-1].reshape(-1)),
        "targets tokens.roll(-1, dims=1): the last position is scored against the first token":
            F.cross_entropy(x.reshape(-1, V), tokens.roll(-1, dims=1).reshape(-1)),
        "the summed, not averaged, cross-entropy": F.cross_entropy(predictions, targets, reduction="sum"),
        "cross-entropy summed over each sequence, then averaged over the batch":
            F.cross_entropy(predictions, targets, reduction="sum") / B,
        "cross-entropy of softmax probabilities: F.cross_entropy applies log_softmax itself, so pass raw logits":
            F.cross_entropy(torch.softmax(predictions, -1), targets),
        "F.nll_loss on raw logits, without log_softmax": F.nll_loss(predictions, targets),
    }


# --- train_step -------------------------------------------------------------------------------------

def sgd_step_suspects(before: torch.Tensor, lr: float, grads: list) -> dict:
    """Parameters after an SGD step from ``before`` done wrongly; ``grads`` are the gradients of the batches of
    this call and the calls before it, oldest first (the last one is this call's)."""
    if len(grads) < 2:
        return {}
    return {"a step on the gradients of this batch and the previous one: they accumulate because "
            "optimizer.zero_grad() is never called": before.double() - lr * (grads[-2] + grads[-1]).double()}


# --- generate ---------------------------------------------------------------------------------------

def greedy_suspects(logits_of: Callable, prompt: torch.Tensor, n: int, max_len: int) -> dict:
    """generate(model, prompt, n, temperature=0) done wrongly; logits_of(context) is the model's (B, T, V) logits.

    A bigram model's prediction depends on the last token only, so for it the two shorter contexts give the
    right answer: they can name the bug of a model that reads its context only.
    """
    @torch.no_grad()  # logits_of may be a student's nn.Module: decoding needs no graph
    def decode(context: Callable, position: int) -> torch.Tensor:
        seq = prompt.clone()
        for _ in range(n):
            seq = torch.cat([seq, logits_of(context(seq))[:, position].argmax(-1, keepdim=True)], dim=1)
        return seq

    return {
        "a context of the last max_len - 1 tokens, one fewer than the model can see":
            decode(lambda seq: seq[:, -(max_len - 1):], -1),
        "only the last token fed to the model: no context at all": decode(lambda seq: seq[:, -1:], -1),
        "the context cropped to the first max_len tokens instead of the last": decode(lambda seq: seq[:, :max_len], -1),
        "greedy decoding from the logits of the first position (logits[:, 0]), not the last":
            decode(lambda seq: seq[:, -max_len:], 0),
    }


def sampling_suspects(sample: Callable, temperature: float, top_k: int | None, vocab_size: int) -> dict:
    """Sampling with the temperature or top_k applied wrongly. ``sample(temperature, top_k)`` replays the right
    sampler (same generator seed, same prompt) with other parameters: each bug here is a wrong parameter."""
    suspects = {
        "sampling at temperature 1: is the temperature ignored, or applied after the softmax (probs / temperature)?":
            sample(1.0, top_k),
        "logits multiplied by the temperature instead of divided by it": sample(1 / temperature, top_k),
    }
    if top_k is not None and top_k < vocab_size:
        suspects["top_k ignored: sampling from the whole vocabulary"] = sample(temperature, None)
        suspects[f"the top {top_k + 1} logits kept instead of the top {top_k}"] = sample(temperature, top_k + 1)
        if top_k > 1:
            suspects[f"the top {top_k - 1} logits kept instead of the top {top_k}"] = sample(temperature, top_k - 1)
    return suspects


# --- for the visible checks -------------------------------------------------------------------------
