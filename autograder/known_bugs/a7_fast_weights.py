"""Known-wrong implementations of a7_fast_weights' exercises, keyed by what the bug is.

Each ``*_suspects`` function returns ``{description: what the wrong code gives}`` for the same inputs as the right
answer, in float64. The hidden suite passes them to ``expect_close(..., suspects=)``; the release's visible checks
call ``matching_bug`` on them, so a student reads "Your result matches <description>" before and after submitting.
The right answers are in ``autograder/reference.py`` (``linear_attention``, ``recurrent_linear_attention``,
``delta_rule``, ``transformer_lm``, ``lm_keys_values``).
"""

from __future__ import annotations

import torch

from autograder import reference as R
from autograder.known_bugs import matching_bug  # noqa: F401  (the visible checks import it from here)

# The visible checks also compare with the reference and measure memory with the grader's own recorder; they may
# import from this module only (tests/test_release.py), so these are re-exported here.
from autograder.reference import delta_rule as reference_delta_rule  # noqa: F401
from autograder.reference import linear_attention as reference_linear_attention  # noqa: F401
from autograder.worker.builtins_for_grader import record_allocations, recorded_allocations  # noqa: F401

# --- linear attention, parallel and recurrent ------------------------------------------------------------


def _linear(fq, fk, v, eps, *, causal=True, inclusive=True, normalise=True, eps_inside=False, state=None):
    """Linear attention from given features, with switches for the known slips."""
    T = fq.shape[-2]
    sim = fq @ fk.transpose(-2, -1)  # (..., T, T)
    if causal:
        sim = sim.masked_fill(~R.causal_mask(T, device=fq.device).tril(0 if inclusive else -1), 0.0)
    num, den = sim @ v, sim.sum(-1, keepdim=True)
    if state is not None:
        num, den = num + fq @ state[0].double(), den + (fq * state[1].double()[..., None, :]).sum(-1, keepdim=True)
    if not normalise:
        return num
    if eps_inside:  # eps added to every component of z before the dot product
        return num / (den + eps * fq.sum(-1, keepdim=True))
    return num / (den + eps)


LINEAR_BUGS = {
    "no_normaliser": "linear attention without the normaliser: phi(q_i)^T S_i is never divided by phi(q_i)^T z_i + eps",
    "elu_without_plus_one": "the feature map elu(x) without the + 1: features can be negative",
    "relu_features": "the feature map relu(x) instead of elu(x) + 1",
    "not_causal": "a sum over all positions (no causal prefix): query i reads the keys and values after it",
    "exclusive_prefix": "an exclusive prefix sum (keys j < i): query i does not read its own key and value",
    "eps_inside": "eps added to every component of the normaliser z before the dot product, not after it",
    "no_features": "attention without the feature map: phi(x) = x",
}


def linear_suspects(q, k, v, eps=R.LINEAR_EPS, state=None) -> dict:
    """Outputs (..., T, d_v) of linear attention with one known bug each (continued from ``state`` when given)."""
    q, k, v = q.double(), k.double(), v.double()
    fq, fk = R.elu_feature(q), R.elu_feature(k)
    elu_q, elu_k = fq - 1, fk - 1
    return {
        LINEAR_BUGS["no_normaliser"]: _linear(fq, fk, v, eps, normalise=False, state=state),
        LINEAR_BUGS["elu_without_plus_one"]: _linear(elu_q, elu_k, v, eps, state=state),
        LINEAR_BUGS["relu_features"]: _linear(q.clamp(min=0), k.clamp(min=0), v, eps, state=state),
        LINEAR_BUGS["not_causal"]: _linear(fq, fk, v, eps, causal=False, state=state),
        LINEAR_BUGS["exclusive_prefix"]: _linear(fq, fk, v, eps, inclusive=False, state=state),
        LINEAR_BUGS["eps_inside"]: _linear(fq, fk, v, eps, eps_inside=True, state=state),
        LINEAR_BUGS["no_features"]: _linear(q, k, v, eps, state=state),
    }


def recurrent_suspects(q, k, v, eps=R.LINEAR_EPS, state=None) -> dict:
    """As linear_suspects, plus a recurrence that ignores the state it is given."""
    suspects = linear_suspects(q, k, v, eps, state)
    if state is not None:
        suspects["a recurrence that starts from zeros, ignoring the state it was given"] = \
            R.recurrent_linear_attention(q, k, v, eps)[0]
    return suspects


# --- the delta rule ----------------------------------------------------------------------------------------

DELTA_BUGS = {
    "no_subtraction": "the plain fast-weight update S + beta phi(k) v^T: the retrieved value is never subtracted",
    "beta_on_key": "beta applied to the key (retrieving with beta * phi(k)) instead of to the difference v - v_bar",
    "unnormalised": "features elu(x) + 1 not divided by their sum (the delta rule uses sum-normalised features)",
    "read_before_write": "out_i read from the memory before step i's update (S_{i-1}, not S_i)",
    "beta_ignored": "beta ignored (a step of 1 every time)",
    "one_minus_beta": "the update scaled by 1 - beta instead of beta",
}


def _delta(fq, fk, v, beta, S, *, subtract=True, beta_on_key=False, read_first=False):
    outs = []
    for i in range(fq.shape[-2]):
        key, b = fk[..., i, :], beta[..., i, None]
        read_key = key * b if beta_on_key else key
        retrieved = (read_key[..., :, None] * S).sum(-2) if subtract else torch.zeros_like(v[..., i, :])
        before = (fq[..., i, :, None] * S).sum(-2)
        scale = b[..., None] if not beta_on_key else 1.0
        S = S + scale * key[..., :, None] * (v[..., i, :] - retrieved)[..., None, :]
        outs.append(before if read_first else (fq[..., i, :, None] * S).sum(-2))
    return torch.stack(outs, dim=-2)


def delta_suspects(q, k, v, beta, state=None) -> dict:
    """Outputs (..., T, d_v) of the delta rule with one known bug each."""
    q, k, v, beta = q.double(), k.double(), v.double(), beta.double()
    fq, fk = R.sum_normalised_feature(q), R.sum_normalised_feature(k)
    S = (torch.zeros(*q.shape[:-2], q.shape[-1], v.shape[-1], dtype=torch.float64, device=q.device)
         if state is None else state.double())
    return {
        DELTA_BUGS["no_subtraction"]: _delta(fq, fk, v, beta, S, subtract=False),
        DELTA_BUGS["beta_on_key"]: _delta(fq, fk, v, beta, S, beta_on_key=True),
        DELTA_BUGS["unnormalised"]: _delta(R.elu_feature(q), R.elu_feature(k), v, beta, S),
        DELTA_BUGS["read_before_write"]: _delta(fq, fk, v, beta, S, read_first=True),
        DELTA_BUGS["beta_ignored"]: _delta(fq, fk, v, torch.ones_like(beta), S),
        DELTA_BUGS["one_minus_beta"]: _delta(fq, fk, v, 1 - beta, S),
    }


# --- the KV cache ------------------------------------------------------------------------------------------

CACHE_BUGS = {
    "top_left_mask": "a top-left aligned causal mask (causal_mask(T_new, T_new) or tril without the offset): the new "
                     "queries are not the last positions of the keys",
    "read_before_append": "attention over the cached keys only: the new tokens' own keys and values are appended "
                          "after attention reads the cache",
    "positions_from_zero": "positions restarting at 0 on every call instead of continuing after the cached ones",
    "no_mask": "no causal mask within the new tokens: every new token sees the later new tokens",
}


def cached_lm(state: dict, tokens: torch.Tensor, cache=None, *, n_heads: int, bug: str | None = None):
    """A Pre-LN TransformerLM reading ``tokens`` (B, T_new) after ``cache`` (a list of (k, v) per block, or None),
    in float64: (logits (B, T_new, V), the new cache). With ``bug`` one of CACHE_BUGS' keys, that slip."""
    B, T_new = tokens.shape
    T_past = 0 if not cache else cache[0][0].shape[-2]
    start = 0 if bug == "positions_from_zero" else T_past
    x = state["tok_emb.weight"].double()[tokens] + state["pos_emb.weight"].double()[start:start + T_new]
    T = T_past + T_new
    mask: torch.Tensor | None = R.causal_mask(T_new, T, device=tokens.device)  # (T_new, T): queries are the last rows
    if bug == "top_left_mask":
        mask = torch.ones(T_new, T, dtype=torch.bool, device=tokens.device).tril()  # query i sees keys 0 .. i
    elif bug == "no_mask":
        mask = None
    n_layers = len({name.split(".")[1] for name in state if name.startswith("blocks.")})
    new_cache = []
    for i in range(n_layers):
        block = R.sub(state, f"blocks.{i}.")
        attn = R.sub(block, "attn.")
        h = R.layer_norm(R.sub(block, "norm1."), x)
        q, k, v = (R.split_heads(R.linear(R.sub(attn, f"{p}."), h), n_heads) for p in ("q_proj", "k_proj", "v_proj"))
        past = (cache[i][0].double(), cache[i][1].double()) if cache else None
        k_all = torch.cat([past[0], k], dim=-2) if past else k  # (B, H, T_past + T_new, d_head)
        v_all = torch.cat([past[1], v], dim=-2) if past else v
        new_cache.append((k_all, v_all))
        if bug == "read_before_append":
            if past is None:
                out = torch.zeros_like(q)  # nothing cached yet: no key to attend to
            else:
                out, _ = R.scaled_dot_product_attention(q, past[0], past[1])
        else:
            out, _ = R.scaled_dot_product_attention(q, k_all, v_all, mask)
        x = x + R.linear(R.sub(attn, "out_proj."), R.merge_heads(out))
        x = x + R.feed_forward(R.sub(block, "ffn."), R.layer_norm(R.sub(block, "norm2."), x))
    x = R.layer_norm(R.sub(state, "norm_f."), x)
    return x @ state["lm_head.weight"].double().T, new_cache


def cache_suspects(state: dict, tokens: torch.Tensor, cache, *, n_heads: int) -> dict:
    """Logits (B, T_new, V) of forward_cached with one known bug each, from the same (correct) cache."""
    return {description: cached_lm(state, tokens, cache, n_heads=n_heads, bug=bug)[0]
            for bug, description in CACHE_BUGS.items()}


def cached_greedy(state: dict, prompt: torch.Tensor, n: int, *, n_heads: int, bug: str | None = None):
    """generate_cached(model, prompt, n) replayed with cached_lm (and its bug): (B, T0 + n) int64."""
    tokens = prompt.clone()
    if n == 0:
        return tokens
    logits, cache = cached_lm(state, prompt, None, n_heads=n_heads, bug=bug)
    for step in range(n):
        nxt = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
        tokens = torch.cat([tokens, nxt], dim=1)
        if step + 1 < n:
            logits, cache = cached_lm(state, nxt, cache, n_heads=n_heads, bug=bug)
    return tokens


def greedy_suspects(state: dict, prompt: torch.Tensor, n: int, *, n_heads: int) -> dict:
    """Greedy continuations (B, T0 + n) of cached generation with one known cache bug each."""
    return {description: cached_greedy(state, prompt, n, n_heads=n_heads, bug=bug)
            for bug, description in CACHE_BUGS.items()}
