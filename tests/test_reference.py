"""The reference model (autograder/reference.py) checked two ways.

1. Against PyTorch's own modules wherever one has the course's semantics (torch.softmax,
   F.scaled_dot_product_attention, nn.MultiheadAttention, F.layer_norm, F.rms_norm,
   nn.TransformerEncoderLayer), with the same weights copied in.
2. Against the solution notebooks: the setup, exercise and given cells of
   solutions/<assignment>/<notebook>.ipynb run in a fresh namespace, the same random state dict is
   loaded into the solution's modules, and outputs (and some gradients) must agree in float64.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autograder import reference as R

pytestmark = pytest.mark.engine

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"
SEEDS = (0, 1, 2)
# float64 roundoff through these graphs (a few thousand operations on values of order 1) stays near 1e-14;
# 1e-10 relative and 1e-12 absolute leave room for other summation orders, while every bug moves values by > 1e-6.
TOL = {"rtol": 1e-10, "atol": 1e-12}
# gradients of a whole model take one more pass over the graph and sum over the batch: 100x the room of TOL.
GRAD_TOL = {"rtol": 1e-8, "atol": 1e-10}


def close(got, want, **tol):
    torch.testing.assert_close(got, want, **(tol or TOL))


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(g, *shape, scale=1.0):
    return torch.randn(*shape, generator=g, dtype=torch.float64) * scale


def random_mask(g, *shape, p_visible=0.6):
    """A random bool mask (True = may attend) in which every query keeps key 0: no fully masked row."""
    mask = torch.rand(*shape, generator=g) < p_visible
    mask[..., 0] = True
    return mask


def torch_masked_softmax(scores, mask, dim=-1):
    """torch.softmax of -inf-filled scores; PyTorch gives NaN for a slice with no visible entry, the course 0."""
    weights = torch.softmax(scores.masked_fill(~mask, -math.inf), dim)
    return torch.where(mask.any(dim, keepdim=True), weights, 0.0)


def leaves(state: dict) -> dict:
    return {name: value.clone().requires_grad_(True) for name, value in state.items()}


# --- 1. against PyTorch --------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_softmax_matches_torch(seed):
    g = generator(seed)
    for shape, dim in [((3, 4, 10), -1), ((3, 4, 10), 1), ((6, 5), 0), ((7,), 0)]:
        x = randn(g, *shape, scale=3.0)
        close(R.softmax(x, dim), torch.softmax(x, dim))
    x = randn(g, 4, 16) * torch.tensor([1e-3, 1.0, 1e2, 1e4], dtype=torch.float64)[:, None]
    for shifted in (x, x + 1000, x - 1000):
        close(R.softmax(shifted), torch.softmax(shifted, -1))
    x, g_out = randn(g, 3, 7).requires_grad_(True), randn(g, 3, 7)
    x_ref = x.detach().clone().requires_grad_(True)
    R.softmax(x).backward(g_out)
    torch.softmax(x_ref, -1).backward(g_out)
    close(x.grad, x_ref.grad)


@pytest.mark.parametrize("seed", SEEDS)
def test_masked_softmax_matches_torch_and_zeroes_fully_masked_rows(seed):
    g = generator(seed)
    scores = randn(g, 2, 3, 5, 7, scale=3.0)
    for mask_shape in [(5, 7), (2, 1, 1, 7), (2, 3, 5, 7), (1, 7)]:
        mask = random_mask(g, *mask_shape)
        close(R.masked_softmax(scores, mask), torch.softmax(scores.masked_fill(~mask, -math.inf), -1))
    mask = random_mask(g, 2, 3, 5, 7)
    mask[0, 1, 2] = False  # one query with no visible key
    mask[1] = False  # a whole batch entry without visible keys
    got = R.masked_softmax(scores, mask)
    close(got, torch_masked_softmax(scores, mask))
    assert not got[0, 1, 2].any() and not got[1].any()
    scores_dim = randn(g, 3, 6, 4)
    mask_dim = torch.rand(3, 6, 4, generator=g) < 0.5  # some slices along dim 1 without a visible entry
    for dim in (1, -2):
        close(R.masked_softmax(scores_dim, mask_dim, dim), torch_masked_softmax(scores_dim, mask_dim, dim))
    leaf = scores.clone().requires_grad_(True)
    R.masked_softmax(leaf, mask).backward(randn(g, 2, 3, 5, 7))
    assert torch.isfinite(leaf.grad).all()
    assert torch.equal(leaf.grad[~mask], torch.zeros(int((~mask).sum()), dtype=torch.float64))


@pytest.mark.parametrize("T_q, T_k", [(1, 1), (4, 4), (3, 7), (1, 6)])
def test_causal_and_padding_masks_follow_their_definitions(T_q, T_k):
    want = torch.tensor([[j <= i + (T_k - T_q) for j in range(T_k)] for i in range(T_q)])
    assert torch.equal(R.causal_mask(T_q, T_k), want)
    assert torch.equal(R.causal_mask(T_k), torch.ones(T_k, T_k, dtype=torch.bool).tril())
    lengths = torch.tensor([T_k, 0, min(2, T_k)])
    want = torch.tensor([[t < n for t in range(T_k)] for n in lengths.tolist()]).reshape(3, 1, 1, T_k)
    assert torch.equal(R.padding_mask(lengths, T_k), want)


SDPA_CASES = [((), 5, 7, 8, 6), ((3,), 4, 4, 16, 16), ((2, 3), 1, 9, 4, 12), ((2, 3), 6, 2, 8, 3)]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("batch, T_q, T_k, d_k, d_v", SDPA_CASES)
def test_attention_matches_f_scaled_dot_product_attention(seed, batch, T_q, T_k, d_k, d_v):
    g = generator(seed)
    q, k, v = randn(g, *batch, T_q, d_k), randn(g, *batch, T_k, d_k), randn(g, *batch, T_k, d_v)
    scale = 1 / math.sqrt(d_k)
    # with T_q > T_k the first T_q - T_k queries of a bottom-right causal mask see no key at all
    for mask in (torch.ones(T_q, T_k, dtype=torch.bool), R.causal_mask(T_q, T_k), random_mask(g, *batch, T_q, T_k)):
        out, weights = R.scaled_dot_product_attention(q, k, v, mask)
        visible = mask.any(-1, keepdim=True)  # PyTorch gives NaN (before 2.5) or 0 for the others
        close(out, torch.where(visible, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), 0.0))
        close(weights, torch_masked_softmax(q @ k.transpose(-2, -1) * scale, mask))
    out, weights = R.scaled_dot_product_attention(q, k, v)
    close(out, F.scaled_dot_product_attention(q, k, v))
    close(weights, torch.softmax(q @ k.transpose(-2, -1) * scale, -1))
    out, _ = R.scaled_dot_product_attention(q, k, v, scale=0.3)
    close(out, F.scaled_dot_product_attention(q, k, v, scale=0.3))


def test_attention_fully_masked_query_is_zero_and_gradients_match_torch():
    g = generator(7)
    q, k, v = randn(g, 2, 2, 5, 8), randn(g, 2, 2, 6, 8), randn(g, 2, 2, 6, 4)
    mask = (R.causal_mask(5, 6) & R.padding_mask(torch.tensor([6, 4]), 6)).expand(2, 2, 5, 6).clone()
    mask[1, 1, 2] = False  # one query with no visible key
    visible = mask.any(-1, keepdim=True)
    out, weights = R.scaled_dot_product_attention(q, k, v, mask)
    # PyTorch gives NaN (before 2.5) or zeros for a query with no visible key: compare the other queries only
    close(out, torch.where(visible, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), 0.0))
    assert not out[1, 1, 2].any() and not weights[1, 1, 2].any()
    ours, theirs = [[t.clone().requires_grad_(True) for t in (q, k, v)] for _ in range(2)]
    g_out = randn(g, 2, 2, 5, 4) * visible  # no gradient from the empty query, which PyTorch may give as NaN
    R.scaled_dot_product_attention(*ours, mask)[0].backward(g_out)
    F.scaled_dot_product_attention(*theirs, attn_mask=mask).backward(g_out)
    for a, b in zip(ours, theirs):
        close(a.grad, b.grad)
    ours = [t.clone().requires_grad_(True) for t in (q, k, v)]
    R.scaled_dot_product_attention(*ours, mask)[0].backward(randn(g, 2, 2, 5, 4))
    assert all(torch.isfinite(t.grad).all() for t in ours)


@pytest.mark.parametrize("shape, n_heads", [((2, 5, 12), 3), ((5, 12), 4), ((2, 3, 4, 8), 2), ((1, 1, 8), 8)])
def test_split_and_merge_heads_give_head_h_features_h(shape, n_heads):
    x = randn(generator(0), *shape)
    d_head = shape[-1] // n_heads
    heads = R.split_heads(x, n_heads)
    assert heads.shape == (*shape[:-2], n_heads, shape[-2], d_head)
    for h in range(n_heads):
        assert torch.equal(heads[..., h, :, :], x[..., h * d_head:(h + 1) * d_head])
    assert torch.equal(R.merge_heads(heads), x)


def torch_mha(state: dict, d_model: int, n_heads: int, bias: bool) -> nn.MultiheadAttention:
    """nn.MultiheadAttention holding `state`: its in_proj is q_proj, k_proj, v_proj stacked."""
    mha = nn.MultiheadAttention(d_model, n_heads, bias=bias, batch_first=True, dtype=torch.float64).eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([state[f"{p}.weight"] for p in R.PROJECTIONS[:3]]))
        mha.out_proj.weight.copy_(state["out_proj.weight"])
        if bias:
            mha.in_proj_bias.copy_(torch.cat([state[f"{p}.bias"] for p in R.PROJECTIONS[:3]]))
            mha.out_proj.bias.copy_(state["out_proj.bias"])
    return mha


def blocked_per_head(mask, n_heads, B, T_q, T_k):
    """Our mask (True = may attend) as nn.MultiheadAttention's 3-D attn_mask: True = blocked, one per (batch, head)."""
    return (~mask).expand(B, n_heads, T_q, T_k).reshape(B * n_heads, T_q, T_k)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("d_model, n_heads, bias", [(24, 3, True), (16, 4, False), (8, 1, True)])
def test_multi_head_attention_matches_nn_multihead_attention(seed, d_model, n_heads, bias):
    g = generator(seed)
    state = R.random_state(R.mha_shapes(d_model, bias), g)
    mha = torch_mha(state, d_model, n_heads, bias)
    B, T_q, T_k = 2, 5, 7
    x, kv = randn(g, B, T_q, d_model), randn(g, B, T_k, d_model)
    close(R.multi_head_attention(state, x, n_heads=n_heads), mha(x, x, x, need_weights=False)[0])
    close(R.multi_head_attention(state, x[0], n_heads=n_heads), mha(x[0], x[0], x[0], need_weights=False)[0])
    x4 = randn(g, 2, 3, T_q, d_model)  # two batch dimensions: nn.MultiheadAttention takes them flattened
    want = mha(*[x4.flatten(0, 1)] * 3, need_weights=False)[0].unflatten(0, (2, 3))
    close(R.multi_head_attention(state, x4, n_heads=n_heads), want)
    for mask in (R.causal_mask(T_q, T_k), R.padding_mask(torch.tensor([7, 3]), T_k), random_mask(g, B, 1, T_q, T_k)):
        want = mha(x, kv, kv, attn_mask=blocked_per_head(mask, n_heads, B, T_q, T_k), need_weights=False)[0]
        close(R.multi_head_attention(state, x, kv, mask, n_heads=n_heads), want)


def test_multi_head_attention_gradients_match_nn_multihead_attention():
    g = generator(3)
    state = R.random_state(R.mha_shapes(12, True), g)
    mha = torch_mha(state, 12, 3, True)
    x, g_out, mask = randn(g, 2, 5, 12), randn(g, 2, 5, 12), R.causal_mask(5)
    ours, x_ours, x_theirs = leaves(state), x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    R.multi_head_attention(ours, x_ours, mask=mask, n_heads=3).backward(g_out)
    mha(x_theirs, x_theirs, x_theirs, attn_mask=~mask, need_weights=False)[0].backward(g_out)
    close(x_ours.grad, x_theirs.grad)
    for p, w_grad, b_grad in zip(R.PROJECTIONS[:3], mha.in_proj_weight.grad.chunk(3), mha.in_proj_bias.grad.chunk(3)):
        close(ours[f"{p}.weight"].grad, w_grad)
        close(ours[f"{p}.bias"].grad, b_grad)
    close(ours["out_proj.weight"].grad, mha.out_proj.weight.grad)
    close(ours["out_proj.bias"].grad, mha.out_proj.bias.grad)


@pytest.mark.parametrize("seed", SEEDS)
def test_activations_and_feed_forward_match_torch(seed):
    g = generator(seed)
    z = randn(g, 1000, scale=4.0)
    close(R.gelu(z), F.gelu(z))  # the exact erf GELU, F.gelu's default
    close(R.silu(z), F.silu(z))
    for d_model, d_ff, activation, bias in [(12, 40, "gelu", True), (12, 40, "relu", True), (8, None, "gelu", False)]:
        state = R.random_state(R.ffn_shapes(d_model, d_ff, bias), g)
        d_ff = 4 * d_model if d_ff is None else d_ff
        act = nn.GELU() if activation == "gelu" else nn.ReLU()
        torch_ffn = nn.Sequential(nn.Linear(d_model, d_ff, bias=bias), act, nn.Linear(d_ff, d_model, bias=bias))
        torch_ffn = torch_ffn.double()
        torch_ffn.load_state_dict({name.replace("up.", "0.").replace("down.", "2."): v for name, v in state.items()})
        for shape in [(5, d_model), (2, 5, d_model), (2, 3, 4, d_model)]:
            x = randn(g, *shape, scale=2.0)
            close(R.feed_forward(state, x, activation), torch_ffn(x))


@pytest.mark.parametrize("seed", SEEDS)
def test_swiglu_matches_a_composition_of_torch_functions(seed):
    """PyTorch has no SwiGLU module: F.linear and F.silu composed as Shazeer (2020) defines it."""
    g = generator(seed)
    for bias in (False, True):
        state = R.random_state(R.swiglu_shapes(8, 20, bias), g)
        x = randn(g, 2, 6, 8, scale=1.5)

        def lin(name, t, state=state):
            return F.linear(t, state[f"{name}.weight"], state.get(f"{name}.bias"))

        close(R.swiglu(state, x), lin("down", F.silu(lin("gate", x)) * lin("up", x)))


@pytest.mark.parametrize("T, d_model, base", [(64, 16, 10000.0), (40, 24, 100.0), (9, 7, 10000.0), (1, 2, 10000.0)])
def test_sinusoidal_positions_follow_the_formula(T, d_model, base):
    def pe(t, j):  # columns 2i and 2i + 1 share the angle t / base**(2i / d_model)
        angle = t / base ** (2 * (j // 2) / d_model)
        return math.sin(angle) if j % 2 == 0 else math.cos(angle)

    want = torch.tensor([[pe(t, j) for j in range(d_model)] for t in range(T)], dtype=torch.float64)
    close(R.sinusoidal_positions(T, d_model, base), want)


@pytest.mark.parametrize("seed", SEEDS)
def test_norms_match_f_layer_norm_and_f_rms_norm(seed):
    g = generator(seed)
    for d_model, eps in [(16, R.EPS), (16, 0.1), (3, R.EPS), (1, R.EPS)]:
        state = R.random_state(R.layer_norm_shapes(d_model), g)
        for x in (randn(g, 2, 5, d_model, scale=2.0) + randn(g, 2, 5, 1), randn(g, 4, d_model) + 1000):
            close(R.layer_norm(state, x, eps), F.layer_norm(x, (d_model,), state["weight"], state["bias"], eps))
            close(R.layer_norm({}, x, eps), F.layer_norm(x, (d_model,), eps=eps))
            weight = R.random_state(R.rms_norm_shapes(d_model), g)["weight"]
            close(R.rms_norm({"weight": weight}, x, eps), F.rms_norm(x, (d_model,), weight, eps))
    x, g_out = randn(g, 3, 4, 12), randn(g, 3, 4, 12)
    for ours_fn, theirs_fn, shapes in [(R.layer_norm, F.layer_norm, R.layer_norm_shapes(12)),
                                       (R.rms_norm, F.rms_norm, R.rms_norm_shapes(12))]:
        ours = leaves(R.random_state(shapes, g))
        theirs = {name: value.detach().clone().requires_grad_(True) for name, value in ours.items()}
        x_ours, x_theirs = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ours_fn(ours, x_ours).backward(g_out)
        theirs_fn(x_theirs, (12,), *theirs.values(), eps=R.EPS).backward(g_out)
        close(x_ours.grad, x_theirs.grad)
        for name in ours:
            close(ours[name].grad, theirs[name].grad)


def torch_block(state: dict, d_model: int, n_heads: int, norm_first: bool, activation="gelu", bias=True,
                norm="layer") -> nn.TransformerEncoderLayer:
    """nn.TransformerEncoderLayer holding a course block's `state`.

    Its norms follow `bias` (the course's keep their biases) and are LayerNorms only, so for bias=False or
    norm="rms" they are replaced by stand-alone nn.LayerNorm / nn.RMSNorm modules.
    """
    d_ff = state["ffn.up.weight"].shape[0]
    layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout=0.0, activation=activation,
                                       layer_norm_eps=R.EPS, batch_first=True, norm_first=norm_first, bias=bias,
                                       dtype=torch.float64)
    if norm == "rms" or not bias:
        make = nn.LayerNorm if norm == "layer" else nn.RMSNorm
        layer.norm1, layer.norm2 = (make(d_model, eps=R.EPS, dtype=torch.float64) for _ in range(2))
    attn = R.sub(state, "attn.")
    theirs = {"self_attn.in_proj_weight": torch.cat([attn[f"{p}.weight"] for p in R.PROJECTIONS[:3]]),
              "self_attn.out_proj.weight": attn["out_proj.weight"],
              "linear1.weight": state["ffn.up.weight"], "linear2.weight": state["ffn.down.weight"]}
    if bias:
        theirs.update({"self_attn.in_proj_bias": torch.cat([attn[f"{p}.bias"] for p in R.PROJECTIONS[:3]]),
                       "self_attn.out_proj.bias": attn["out_proj.bias"],
                       "linear1.bias": state["ffn.up.bias"], "linear2.bias": state["ffn.down.bias"]})
    theirs.update({name: value for name, value in state.items() if name.startswith("norm")})
    layer.load_state_dict(theirs)
    # training mode (dropout is 0, so nothing is dropped) keeps PyTorch off its fused inference path,
    # which computes in another order
    return layer.train()


BLOCK_CONFIGS = [(24, 3, None, "gelu", True, "layer"), (16, 4, 40, "relu", False, "layer"),
                 (16, 2, None, "gelu", True, "rms")]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("d_model, n_heads, d_ff, activation, bias, norm", BLOCK_CONFIGS)
def test_block_matches_nn_transformer_encoder_layer(seed, norm_first, d_model, n_heads, d_ff, activation, bias, norm):
    g = generator(seed)
    state = R.random_state(R.block_shapes(d_model, d_ff, bias, norm), g)
    layer = torch_block(state, d_model, n_heads, norm_first, activation, bias, norm)
    x, lengths = randn(g, 3, 6, d_model), torch.tensor([6, 4, 1])
    kwargs = {"n_heads": n_heads, "norm_first": norm_first, "activation": activation, "norm": norm}
    close(R.transformer_block(state, x, **kwargs), layer(x))
    causal = R.causal_mask(6)
    close(R.transformer_block(state, x, causal, **kwargs), layer(x, src_mask=~causal))  # theirs: True = blocked
    padding = R.padding_mask(lengths, 6)
    close(R.transformer_block(state, x, padding, **kwargs), layer(x, src_key_padding_mask=~padding[:, 0, 0]))


@pytest.mark.parametrize("norm_first", [True, False])
def test_block_gradients_match_nn_transformer_encoder_layer(norm_first):
    g = generator(5)
    state = R.random_state(R.block_shapes(12), g)
    layer = torch_block(state, 12, 3, norm_first)
    x, g_out = randn(g, 2, 5, 12), randn(g, 2, 5, 12)
    ours, x_ours, x_theirs = leaves(state), x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    R.transformer_block(ours, x_ours, n_heads=3, norm_first=norm_first).backward(g_out)
    layer(x_theirs).backward(g_out)
    close(x_ours.grad, x_theirs.grad, **GRAD_TOL)
    close(ours["ffn.up.weight"].grad, layer.linear1.weight.grad, **GRAD_TOL)
    close(ours["norm2.bias"].grad, layer.norm2.bias.grad, **GRAD_TOL)
    close(torch.cat([ours[f"attn.{p}.weight"].grad for p in R.PROJECTIONS[:3]]), layer.self_attn.in_proj_weight.grad,
          **GRAD_TOL)


def torch_lm(state: dict, tokens, lengths, n_heads: int, norm_first: bool):
    """The language model composed of torch modules: PyTorch has no decoder-only LM, so embeddings,
    nn.TransformerEncoderLayers under a causal src_mask, nn.LayerNorm and a product with the head."""
    T, d_model = tokens.shape[1], state["tok_emb.weight"].shape[1]
    x = F.embedding(tokens, state["tok_emb.weight"]) + state["pos_emb.weight"][:T]
    n_layers = len({name.split(".")[1] for name in state if name.startswith("blocks.")})
    padding = None if lengths is None else ~R.padding_mask(lengths, T)[:, 0, 0]
    for i in range(n_layers):
        layer = torch_block(R.sub(state, f"blocks.{i}."), d_model, n_heads, norm_first)
        x = layer(x, src_mask=~R.causal_mask(T), src_key_padding_mask=padding)
    if norm_first:
        x = F.layer_norm(x, (d_model,), state["norm_f.weight"], state["norm_f.bias"], R.EPS)
    return x @ state.get("lm_head.weight", state["tok_emb.weight"]).T


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("norm_first, tie_weights", [(True, False), (False, False), (True, True)])
def test_language_model_matches_a_composition_of_torch_modules(seed, norm_first, tie_weights):
    g = generator(seed)
    state = R.random_state(R.lm_shapes(11, 16, 2, 12, norm_first=norm_first, tie_weights=tie_weights), g)
    tokens, lengths = torch.randint(0, 11, (3, 10), generator=g), torch.tensor([10, 3, 7])
    for given in (None, lengths):
        close(R.transformer_lm(state, tokens, given, n_heads=2, norm_first=norm_first),
              torch_lm(state, tokens, given, 2, norm_first))


@pytest.mark.parametrize("seed", SEEDS)
def test_lm_loss_matches_f_cross_entropy(seed):
    g = generator(seed)
    logits, tokens = randn(g, 3, 8, 10, scale=2.0), torch.randint(0, 10, (3, 8), generator=g)
    close(R.lm_loss(logits, tokens), F.cross_entropy(logits[:, :-1].reshape(-1, 10), tokens[:, 1:].reshape(-1)))


def test_random_state_is_seeded_and_shaped():
    shapes = R.lm_shapes(7, 8, 2, 5, d_ff=12)
    first, again = R.random_state(shapes, generator(4)), R.random_state(shapes, generator(4))
    assert {name: tuple(v.shape) for name, v in first.items()} == shapes
    assert all(torch.equal(first[name], again[name]) for name in shapes)
    assert not torch.equal(first["blocks.0.norm1.weight"], first["blocks.0.norm2.weight"])
    assert (first["blocks.1.norm2.weight"] - 1).abs().max() < 1.5  # norms near 1, not near 0
    assert "lm_head.weight" not in R.lm_shapes(7, 8, 2, 5, tie_weights=True)
    assert "pos_emb.weight" not in R.lm_shapes(7, 8, 2, 5, positions="sinusoidal")
    with pytest.raises(KeyError, match="norm3"):
        R.sub(first, "blocks.0.norm3.")


# --- 2. against the solution notebooks -------------------------------------------------------

@functools.cache
def solution(assignment: str) -> dict:
    """The namespace of the solution notebook's setup, exercise and given cells, run in notebook order."""
    (path,) = sorted((SOLUTIONS / assignment).glob("*.ipynb"))
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]

    def wanted(index, cell):
        meta = cell.metadata.get("nbgrader", {})
        if index == 0:  # the setup cell: imports, seeding
            return not meta
        return meta.get("solution", False) or meta.get("grade_id", "").startswith("given_")

    namespace = {"__name__": f"solution_{assignment}"}
    os.environ.setdefault("MPLBACKEND", "Agg")  # the setup cells import pyplot
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    try:  # the setup cells seed torch and set its thread count: leave neither to later tests
        with contextlib.redirect_stdout(io.StringIO()):
            for index, cell in enumerate(cells):
                if wanted(index, cell):  # the course's own notebooks, trusted like this file
                    exec(compile(cell.source, f"{path.name}[{index}]", "exec"), namespace)  # noqa: S102
    finally:
        torch.set_num_threads(threads)
        torch.set_rng_state(rng)
    return namespace


def loaded(module: nn.Module, state: dict) -> nn.Module:
    """`module` in float64 and eval() mode, holding `state` (strict: the names must be the module's own)."""
    module = module.double().eval()
    module.load_state_dict(state)
    return module


def expect_shapes(module: nn.Module, shapes: dict) -> None:
    assert {name: tuple(p.shape) for name, p in module.named_parameters()} == shapes


@pytest.mark.parametrize("seed", SEEDS)
def test_a1_attention_solution_agrees(seed):
    sol, g = solution("a1_attention"), generator(seed)
    for shape, dim in [((3, 4, 10), -1), ((3, 4, 10), 1), ((6, 5), 0)]:
        x = randn(g, *shape, scale=3.0)
        close(R.softmax(x, dim), sol["softmax"](x, dim))
    for batch, T_q, T_k, d_k, d_v in SDPA_CASES:
        q, k, v = randn(g, *batch, T_q, d_k), randn(g, *batch, T_k, d_k), randn(g, *batch, T_k, d_v)
        for ours, theirs in zip(R.scaled_dot_product_attention(q, k, v), sol["scaled_dot_product_attention"](q, k, v)):
            close(ours, theirs)
    x = randn(g, 2, 5, 12)
    for n_heads in (1, 3, 4):
        assert torch.equal(R.split_heads(x, n_heads), sol["split_heads"](x, n_heads))
        assert torch.equal(R.merge_heads(R.split_heads(x, n_heads)), sol["merge_heads"](sol["split_heads"](x, n_heads)))
    for d_model, n_heads, bias in [(24, 3, True), (16, 4, False), (8, 8, True)]:
        state = R.random_state(R.mha_shapes(d_model, bias), g)
        module = sol["MultiHeadAttention"](d_model, n_heads, bias=bias)
        expect_shapes(module, R.mha_shapes(d_model, bias))
        x = randn(g, 2, 6, d_model)
        close(R.multi_head_attention(state, x, n_heads=n_heads), loaded(module, state)(x))


@pytest.mark.parametrize("seed", SEEDS)
def test_a2_masking_solution_agrees(seed):
    sol, g = solution("a2_masking"), generator(seed)
    for T_q, T_k in [(1, 1), (6, 6), (2, 5), (1, 6)]:
        assert torch.equal(R.causal_mask(T_q, T_k), sol["causal_mask"](T_q, T_k))
    lengths = torch.tensor([7, 0, 3, 1])
    assert torch.equal(R.padding_mask(lengths, 7), sol["padding_mask"](lengths, 7))
    scores = randn(g, 2, 3, 5, 7, scale=3.0)
    for mask_shape in [(5, 7), (2, 1, 1, 7), (2, 3, 5, 7)]:
        mask = torch.rand(*mask_shape, generator=g) < 0.5  # fully masked rows included
        close(R.masked_softmax(scores, mask), sol["masked_softmax"](scores, mask))
        close(R.masked_softmax(scores, mask, dim=-2), sol["masked_softmax"](scores, mask, dim=-2))
    for batch, T_q, T_k, d_k, d_v in SDPA_CASES:
        q, k, v = randn(g, *batch, T_q, d_k), randn(g, *batch, T_k, d_k), randn(g, *batch, T_k, d_v)
        for mask in (None, R.causal_mask(T_q, T_k), torch.rand(*batch, T_q, T_k, generator=g) < 0.5):
            ours = R.scaled_dot_product_attention(q, k, v, mask)
            theirs = sol["scaled_dot_product_attention"](q, k, v, mask)
            close(ours[0], theirs[0])
            close(ours[1], theirs[1])
    for d_model, n_heads, bias in [(24, 3, True), (16, 4, False)]:
        state = R.random_state(R.mha_shapes(d_model, bias), g)
        module = loaded(sol["MultiHeadAttention"](d_model, n_heads, bias=bias), state)
        x, lengths = randn(g, 3, 6, d_model), torch.tensor([6, 3, 0])  # sequence 2 has no visible key at all
        for mask in (None, R.causal_mask(6), R.padding_mask(lengths, 6), R.causal_mask(6) & R.padding_mask(lengths, 6)):
            close(R.multi_head_attention(state, x, mask=mask, n_heads=n_heads), module(x, mask))


def test_a2_masking_solution_gradients_agree_with_an_empty_sequence():
    sol, g = solution("a2_masking"), generator(11)
    state = R.random_state(R.mha_shapes(12), g)
    module = loaded(sol["MultiHeadAttention"](12, 3), state)
    x, g_out, mask = randn(g, 2, 5, 12), randn(g, 2, 5, 12), R.causal_mask(5) & R.padding_mask(torch.tensor([5, 0]), 5)
    ours, x_ours, x_theirs = leaves(state), x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    R.multi_head_attention(ours, x_ours, mask=mask, n_heads=3).backward(g_out)
    module(x_theirs, mask).backward(g_out)
    close(x_ours.grad, x_theirs.grad)
    for name, param in module.named_parameters():
        close(ours[name].grad, param.grad)


@pytest.mark.parametrize("seed", SEEDS)
def test_a3_ffn_positions_solution_agrees(seed):
    sol, g = solution("a3_ffn_positions"), generator(seed)
    for d_model, d_ff, activation, bias in [(12, 40, "gelu", True), (12, 40, "relu", True), (8, None, "gelu", False),
                                            (10, 24, "relu", False)]:
        state = R.random_state(R.ffn_shapes(d_model, d_ff, bias), g)
        module = sol["FeedForward"](d_model, d_ff=d_ff, activation=activation, bias=bias)
        expect_shapes(module, R.ffn_shapes(d_model, d_ff, bias))
        x = randn(g, 2, 7, d_model, scale=2.0)
        close(R.feed_forward(state, x, activation), loaded(module, state)(x))
    for d_model, d_ff, bias in [(12, 32, False), (8, 20, True)]:
        state = R.random_state(R.swiglu_shapes(d_model, d_ff, bias), g)
        module = sol["SwiGLU"](d_model, d_ff, bias=bias)
        expect_shapes(module, R.swiglu_shapes(d_model, d_ff, bias))
        x = randn(g, 3, 2, 6, d_model, scale=1.5)
        close(R.swiglu(state, x), loaded(module, state)(x))
    for T, d_model, base in [(64, 16, 10000.0), (40, 24, 100.0), (1024, 64, 10000.0)]:
        # the solution rounds float64 sinusoids to float32 once: half a float32 ulp of 1 is 2**-25
        close(sol["sinusoidal_positions"](T, d_model, base).double(), R.sinusoidal_positions(T, d_model, base),
              rtol=0.0, atol=2.0**-25)


@pytest.mark.parametrize("seed", SEEDS)
def test_a4_residual_norm_solution_agrees(seed):
    sol, g = solution("a4_residual_norm"), generator(seed)
    for d_model, eps in [(16, R.EPS), (16, 0.1), (1, R.EPS)]:
        state = R.random_state(R.layer_norm_shapes(d_model), g)
        x = randn(g, 2, 5, d_model, scale=2.0) + randn(g, 2, 5, 1)
        close(R.layer_norm(state, x, eps), loaded(sol["LayerNorm"](d_model, eps=eps), state)(x))
        close(R.layer_norm({}, x, eps), loaded(sol["LayerNorm"](d_model, eps=eps, elementwise_affine=False), {})(x))
        state = R.random_state(R.rms_norm_shapes(d_model), g)
        close(R.rms_norm(state, x, eps), loaded(sol["RMSNorm"](d_model, eps=eps), state)(x))
    lengths = torch.tensor([6, 2, 0])  # sequence 2 has no visible key at all
    for norm_first in (True, False):
        for d_model, n_heads, d_ff, activation, bias, norm in BLOCK_CONFIGS:
            shapes = R.block_shapes(d_model, d_ff, bias, norm)
            state = R.random_state(shapes, g)
            module = sol["TransformerBlock"](d_model, n_heads, d_ff, norm_first=norm_first, activation=activation,
                                             bias=bias, norm=norm)
            expect_shapes(module, shapes)
            module = loaded(module, state)
            x = randn(g, 3, 6, d_model)
            kwargs = {"n_heads": n_heads, "norm_first": norm_first, "activation": activation, "norm": norm}
            for mask in (None, R.causal_mask(6), R.padding_mask(lengths, 6)):
                close(R.transformer_block(state, x, mask, **kwargs), module(x, mask))


def lm_config(norm_first=True, positions="learned", tie_weights=False):
    return {"vocab_size": 13, "d_model": 16, "n_heads": 2, "n_layers": 2, "max_len": 12, "norm_first": norm_first,
            "positions": positions, "tie_weights": tie_weights}


def solution_lm(cfg: dict, g: torch.Generator):
    """The solution's TransformerLM holding random weights, and those weights as the reference reads them."""
    sol = solution("a5_transformer_lm")
    args = (cfg["vocab_size"], cfg["d_model"], cfg["n_heads"], cfg["n_layers"], cfg["max_len"])
    kwargs = {k: cfg[k] for k in ("norm_first", "positions", "tie_weights")}
    shapes = R.lm_shapes(*args[:2], cfg["n_layers"], cfg["max_len"], **kwargs)
    model = sol["TransformerLM"](*args, **kwargs)
    expect_shapes(model, shapes)
    state = R.random_state(shapes, g)
    tied = {"lm_head.weight": state["tok_emb.weight"]} if cfg["tie_weights"] else {}
    model = loaded(model, {**state, **tied})  # state_dict() lists a tied tensor under both names
    if cfg["positions"] == "sinusoidal":
        state["pos_emb"] = model.pos_emb  # the model's own table (a non-persistent buffer): see the test below
    return model, state


LM_CONFIGS = [lm_config(), lm_config(norm_first=False), lm_config(tie_weights=True), lm_config(positions="sinusoidal")]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("cfg", LM_CONFIGS, ids=["pre-ln", "post-ln", "tied", "sinusoidal"])
def test_a5_transformer_lm_solution_agrees(seed, cfg):
    g = generator(seed)
    model, state = solution_lm(cfg, g)
    tokens = torch.randint(0, cfg["vocab_size"], (3, 10), generator=g)
    for lengths in (None, torch.tensor([10, 4, 1])):
        want = model(tokens, lengths)
        close(R.transformer_lm(state, tokens, lengths, n_heads=cfg["n_heads"], norm_first=cfg["norm_first"]), want)
    close(R.lm_loss(want, tokens), solution("a5_transformer_lm")["lm_loss"](want, tokens))


def test_a5_transformer_lm_solution_gradients_agree():
    g = generator(13)
    cfg = lm_config(tie_weights=True)
    model, state = solution_lm(cfg, g)
    tokens, g_out = torch.randint(0, 13, (2, 9), generator=g), randn(g, 2, 9, 13)
    ours = leaves(state)
    R.transformer_lm(ours, tokens, n_heads=2).backward(g_out)
    model(tokens).backward(g_out)
    for name, param in model.named_parameters():  # the tied tensor once, its gradient summed over both uses
        close(ours[name].grad, param.grad, **GRAD_TOL)


def test_a5_sinusoid_buffer_is_float32_sinusoids():
    """The a5 model's sinusoids are computed in float32 (its given cell), so the reference reads the model's own
    table rather than recomputing it. That table is within float32 angle rounding of the exact one:
    about 1e-7 * t radians at position t, bounded here by the a3 suite's 1e-5 + 2e-6 * t."""
    model, _ = solution_lm(lm_config(positions="sinusoidal", tie_weights=False), generator(0))
    table = model.pos_emb
    exact = R.sinusoidal_positions(*table.shape)
    t = torch.arange(table.shape[0], dtype=torch.float64)[:, None]
    assert ((table - exact).abs() <= 1e-5 + 2e-6 * t).all()


# --- a6_training_stability: the schedule against PyTorch, the blocks against the solution -------------------

SCHEDULES = [(6e-4, 8, 60, 6e-5), (1.0, 2, 9, 0.0), (3e-4, 25, 200, 3e-5)]


@pytest.mark.parametrize("config", SCHEDULES, ids=str)
def test_a6_lr_schedule_matches_pytorch_schedulers_and_the_solution(config):
    from autograder.suites.a6_training_stability.test_lr_schedule import pytorch_rates

    max_lr, W, N, min_lr = config
    ours = torch.tensor([R.lr_schedule(s, *config) for s in range(N + 1)], dtype=torch.float64)
    torch.testing.assert_close(ours, pytorch_rates(*config), rtol=1e-9, atol=1e-15)
    solution_schedule = solution("a6_training_stability")["lr_schedule"]
    assert [solution_schedule(s, *config) for s in range(N + 10)] == [R.lr_schedule(s, *config) for s in range(N + 10)]
    assert ours[W - 1] == max_lr and ours[N] == min_lr and R.lr_schedule(5 * N, *config) == min_lr


def test_a6_schedule_suspects_are_all_wrong():
    from autograder.known_bugs.a6_training_stability import schedule_suspects

    config = (1.0, 4, 12, 0.1)
    right = torch.tensor([R.lr_schedule(s, *config) for s in range(16)], dtype=torch.float64)
    for bug, wrong in schedule_suspects(*config, range(16)).items():
        assert (wrong - right).abs().max() > 1e-3, bug


@pytest.mark.parametrize("seed", SEEDS)
def test_a6_rezero_block_solution_agrees(seed):
    from autograder.known_bugs.a6_training_stability import rezero_suspects

    g = generator(seed)
    block = solution("a6_training_stability")["ReZeroBlock"](16, 2, 24)
    x, mask = randn(g, 2, 5, 16), R.causal_mask(5)
    assert torch.equal(block.double().eval()(x, mask), x)  # alpha starts at 0: the identity
    shapes = R.rezero_shapes(16, 24)
    expect_shapes(block, shapes)
    state = R.random_state({k: v for k, v in shapes.items() if k != "alpha"}, g)
    state["alpha"] = 0.5 + 0.2 * randn(g, 1)
    block = loaded(block, state)
    want = R.rezero_block(state, x, mask, n_heads=2)
    close(want, block(x, mask))
    for bug, wrong in rezero_suspects(state, x, mask, n_heads=2).items():
        assert (wrong - want).abs().max() > 1e-3, bug


@pytest.mark.parametrize("seed", SEEDS)
def test_a6_residual_solution_agrees(seed):
    from autograder.known_bugs.a6_training_stability import residual_suspects

    g = generator(seed)
    model = solution("a6_training_stability")["ResiDual"](16, 2, 3)
    shapes = R.residual_shapes(16, 3)
    expect_shapes(model, shapes)
    state = R.random_state(shapes, g)
    model = loaded(model, state)
    x, mask = randn(g, 2, 6, 16), R.causal_mask(6)
    want = R.residual(state, x, mask, n_heads=2)
    close(want, model(x, mask))
    for bug, wrong in residual_suspects(state, x, mask, n_heads=2).items():
        assert (wrong - want).abs().max() > 1e-3, bug
    # the Post-LN stream of a ResiDual block is a Post-LN block's output, checked against PyTorch above
    block = R.sub(state, "blocks.0.")
    close(R.residual_block(block, x, x, mask, n_heads=2)[0], R.transformer_block(block, x, mask, n_heads=2,
                                                                                  norm_first=False))
    ours = leaves(state)
    R.residual(ours, x, mask, n_heads=2).backward(torch.ones_like(want))
    model(x, mask).backward(torch.ones_like(want))
    for name, param in model.named_parameters():
        close(ours[name].grad, param.grad, **GRAD_TOL)


def test_a6_gpt2_init_solution_follows_the_spec():
    sol = solution("a6_training_stability")
    torch.manual_seed(0)
    n_layers = 4
    model = sol["TransformerLM"](13, 64, 4, n_layers, 16)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(0.5, 1.5)
    sol["gpt2_init_"](model, n_layers)
    params = dict(model.named_parameters())
    spec = R.gpt2_init_spec(R.lm_shapes(13, 64, n_layers, 16), n_layers)
    assert set(spec) == set(params)
    for name, (mean, std) in spec.items():
        if std == 0:
            assert torch.all(params[name] == mean), name
        else:
            assert abs(params[name].std().item() - std) < 0.25 * std, name
    assert spec["blocks.0.attn.out_proj.weight"][1] == spec["blocks.3.ffn.down.weight"][1] == 0.02 / math.sqrt(8)
    assert spec["blocks.0.attn.q_proj.weight"][1] == spec["lm_head.weight"][1] == 0.02


# --- a7_fast_weights: linear attention, fast weights, the delta rule, a KV cache ---------------------------

def _loop_linear_attention(q, k, v, eps):
    """Katharopoulos et al. (2020), one query at a time with F.elu: an independent reading of the formula."""
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    outs = []
    for i in range(q.shape[-2]):
        num = sum((fq[..., i, :] * fk[..., j, :]).sum(-1, keepdim=True) * v[..., j, :] for j in range(i + 1))
        den = sum((fq[..., i, :] * fk[..., j, :]).sum(-1, keepdim=True) for j in range(i + 1))
        outs.append(num / (den + eps))
    return torch.stack(outs, dim=-2)


@pytest.mark.parametrize("seed", SEEDS)
def test_a7_linear_attention_matches_the_formula(seed):
    g = generator(seed)
    q, k, v = randn(g, 2, 3, 6, 4), randn(g, 2, 3, 6, 4), randn(g, 2, 3, 6, 5)
    close(R.elu_feature(q), F.elu(q) + 1)
    for eps in (1e-6, 0.5):
        close(R.linear_attention(q, k, v, eps), _loop_linear_attention(q, k, v, eps))
    # the recurrent form: whole = two halves continued from the state; the state is the sum of outer products
    out, (S, z) = R.recurrent_linear_attention(q, k, v)
    close(out, R.linear_attention(q, k, v))
    first, state = R.recurrent_linear_attention(q[..., :2, :], k[..., :2, :], v[..., :2, :])
    second, (S2, z2) = R.recurrent_linear_attention(q[..., 2:, :], k[..., 2:, :], v[..., 2:, :], state=state)
    close(torch.cat([first, second], dim=-2), out)
    fk = F.elu(k) + 1
    close(S2, torch.einsum("...tk,...tv->...kv", fk, v))
    close(z2, fk.sum(-2))


@pytest.mark.parametrize("seed", SEEDS)
def test_a7_delta_rule_matches_the_paper(seed):
    """Schlag et al. (2021), section 4.2, for one sequence with torch.outer: W += beta (v - W phi(k)) outer phi(k),
    y = W phi(q), W of shape (d_v, d_k) as in the paper (the reference keeps its transpose)."""
    g = generator(seed)
    q, k, v = randn(g, 7, 4), randn(g, 7, 4), randn(g, 7, 3)
    beta = torch.sigmoid(randn(g, 7))
    phi = lambda x: (F.elu(x) + 1) / (F.elu(x) + 1).sum()  # noqa: E731
    W0 = randn(g, 3, 4)  # a memory to continue from
    W, ys = W0, []
    for i in range(7):
        W = W + beta[i] * torch.outer(v[i] - W @ phi(k[i]), phi(k[i]))
        ys.append(W @ phi(q[i]))
    out, S = R.delta_rule(q, k, v, beta, state=W0.T)
    close(out, torch.stack(ys))
    close(S, W.T)


@pytest.mark.parametrize("seed", SEEDS)
def test_a7_solution_agrees(seed):
    sol, g = solution("a7_fast_weights"), generator(seed)
    q, k, v = randn(g, 2, 5, 4), randn(g, 2, 5, 4), randn(g, 2, 5, 3)
    beta, S0 = torch.sigmoid(randn(g, 2, 5)), randn(g, 2, 4, 3)
    close(sol["linear_attention"](q, k, v), R.linear_attention(q, k, v))
    state = R.linear_attention_state(randn(g, 2, 3, 4), randn(g, 2, 3, 3))
    got = sol["recurrent_linear_attention"](q, k, v, state=state)
    want = R.recurrent_linear_attention(q, k, v, state=state)
    close(got[0], want[0])
    close(got[1][0], want[1][0])
    close(got[1][1], want[1][1])
    for ours, theirs in zip(sol["delta_rule"](q, k, v, beta, S0), R.delta_rule(q, k, v, beta, S0)):
        close(ours, theirs)


def test_a7_kv_cache_agrees_with_the_model():
    """The solution's forward_cached and the known-bugs module's cached_lm (bug=None), which the hidden suite uses to
    replay long greedy runs, both equal the last rows of reference.transformer_lm; the cache equals lm_keys_values."""
    from autograder.known_bugs.a7_fast_weights import cached_greedy, cached_lm

    sol, g = solution("a7_fast_weights"), generator(5)
    shapes = R.lm_shapes(11, 16, 2, 20)
    state = R.random_state(shapes, g)
    model = loaded(sol["TransformerLM"](11, 16, 2, 2, 20), state)
    tokens = torch.randint(0, 11, (2, 12), generator=g)
    want = R.transformer_lm(state, tokens, n_heads=2)
    with torch.no_grad():
        close(model(tokens), want)
        cache = R.lm_keys_values(state, tokens[:, :5], n_heads=2)
        for split in (1, 5, 11):  # a prompt read at once, then one chunk
            past = R.lm_keys_values(state, tokens[:, :split], n_heads=2)
            logits, new = sol["forward_cached"](model, tokens[:, split:], past)
            close(logits, want[:, split:])
            close(cached_lm(state, tokens[:, split:], past, n_heads=2)[0], want[:, split:])
            for (k, v), (k_want, v_want) in zip(new, R.lm_keys_values(state, tokens, n_heads=2)):
                close(k, k_want)
                close(v, v_want)
        _, fresh = sol["forward_cached"](model, tokens[:, :5])
        for (k, v), (k_want, v_want) in zip(fresh, cache):
            close(k, k_want)
            close(v, v_want)
        prompt = tokens[:, :3]
        greedy = prompt
        for _ in range(10):
            greedy = torch.cat([greedy, R.transformer_lm(state, greedy, n_heads=2)[:, -1].argmax(-1, keepdim=True)], 1)
        assert torch.equal(sol["generate_cached"](model, prompt, 10), greedy)
        assert torch.equal(cached_greedy(state, prompt, 10, n_heads=2), greedy)
        assert torch.equal(sol["generate_greedy"](model, prompt, 10), greedy)
