"""The course's reference model: every exercise as a short pure function, computed in float64.

This is the one oracle of the hidden suites. Each entry point casts its floating inputs with
``.double()`` (the identity on a float64 tensor, so autograd still reaches a caller's leaves),
computes from the definition, and returns float64. A module is given as its state dict, keyed
exactly as the students' modules name their parameters, so a test loads one dict into a
student's module and hands the same dict to this file:

    MultiHeadAttention   q_proj.weight, q_proj.bias, k_proj.*, v_proj.*, out_proj.*  (no biases when bias=False)
    FeedForward          up.weight, up.bias, down.weight, down.bias
    SwiGLU               gate.*, up.*, down.*
    LayerNorm            weight, bias  (neither when elementwise_affine=False)
    RMSNorm              weight
    TransformerBlock     norm1.*, attn.<MultiHeadAttention>, norm2.*, ffn.<FeedForward>
    TransformerLM        tok_emb.weight, pos_emb.weight (learned positions; with sinusoids, optionally
                         pos_emb, the model's own buffer), blocks.<i>.<TransformerBlock>, norm_f.weight,
                         norm_f.bias (Pre-LN only), lm_head.weight (absent, or tok_emb.weight, when tied)

Conventions (COURSE.md): batch first; boolean masks, True = "may attend", broadcasting against
(..., T_q, T_k); a query with no visible key gets zero weights and a zero output, with finite
gradients; head h owns features h*d_head:(h+1)*d_head of each projection. Everything runs in
eval() mode: there is no dropout here.

References:
- Vaswani et al., "Attention Is All You Need" (2017): scaled dot-product and multi-head attention
  (§3.2), the position-wise feed-forward network (§3.3), sinusoidal positions (§3.5), and the
  Post-LN block, a norm after each residual addition (§3.1).
- Xiong et al., "On Layer Normalization in the Transformer Architecture" (2020): the Pre-LN block.
- Ba, Kiros & Hinton, "Layer Normalization" (2016); Zhang & Sennrich, "Root Mean Square Layer
  Normalization" (2019).
- Hendrycks & Gimpel, "Gaussian Error Linear Units (GELUs)" (2016); Shazeer, "GLU Variants Improve
  Transformer" (2020) for SwiGLU.
- Radford et al., "Language Models are Unsupervised Multitask Learners" (2019): the GPT-2 language
  model (learned positions, Pre-LN blocks, a final LayerNorm); Press & Wolf, "Using the Output
  Embedding to Improve Language Models" (2017): the tied input and output embedding.
"""

from __future__ import annotations

import math

import torch

EPS = 1e-5  # the default eps of the course's LayerNorm and RMSNorm, as nn.LayerNorm's
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


def sub(state: dict, prefix: str) -> dict:
    """The entries of a submodule, its prefix removed: sub(state, "attn.") holds "q_proj.weight", ..."""
    found = {name[len(prefix):]: value for name, value in state.items() if name.startswith(prefix)}
    if not found:  # a misspelt prefix must not pass as a module without parameters
        raise KeyError(f"no entry of the state dict starts with {prefix!r}")
    return found


def linear(state: dict, x: torch.Tensor) -> torch.Tensor:
    """nn.Linear: state holds weight (out, in) and, unless bias=False, bias (out,)."""
    y = x.double() @ state["weight"].double().T  # (..., in) @ (in, out) -> (..., out)
    return y + state["bias"].double() if "bias" in state else y


# --- attention (a1_attention, a2_masking) -------------------------------------------------

def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """exp(x) / sum(exp(x)) along dim, shifted by the maximum so that exp never overflows."""
    x = x.double()
    e = (x - x.amax(dim, keepdim=True).detach()).exp()  # the shift cancels out: no gradient flows through it
    return e / e.sum(dim, keepdim=True)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None, dim: int = -1) -> torch.Tensor:
    """Softmax over the entries where mask is True; a slice with no True entry is all zeros.

    Blocked entries are exactly 0 and receive exactly 0 gradient; a fully blocked slice has finite
    (zero) gradients too, because nothing here divides 0 by 0 or subtracts -inf from -inf.
    """
    if mask is None:
        return softmax(scores, dim)
    scores = torch.where(mask, scores.double(), -math.inf)  # the joint broadcast shape of scores and mask
    shift = scores.amax(dim, keepdim=True).detach()
    shift = torch.where(shift.isfinite(), shift, 0.0)  # a fully blocked slice: -inf - (-inf) would be NaN
    e = (scores - shift).exp()  # exp(-inf) = 0 at every blocked entry
    total = e.sum(dim, keepdim=True)
    return e / torch.where(total > 0, total, 1.0)  # a fully blocked slice: 0 / 1 = 0


def causal_mask(T_q: int, T_k: int | None = None, device=None) -> torch.Tensor:
    """(T_q, T_k), True where query i may attend to key j, that is j <= i + (T_k - T_q).

    The queries are the last T_q of the T_k positions (bottom-right alignment): what a query
    appended to a cache of earlier keys sees in incremental decoding.
    """
    T_k = T_q if T_k is None else T_k
    return torch.ones(T_q, T_k, dtype=torch.bool, device=device).tril(diagonal=T_k - T_q)


def padding_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, 1, 1, T), True at the real tokens, t < lengths[b]: it hides keys, for every head and query."""
    real = torch.arange(T, device=lengths.device) < lengths[:, None]  # (T,) vs (B, 1) -> (B, T)
    return real[:, None, None, :]  # (B, T) -> (B, 1, 1, T)


def scaled_dot_product_attention(q, k, v, mask=None, scale=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, weights) of softmax(q @ k^T * scale) @ v, scale = 1/sqrt(d_k) unless given.

    q (..., T_q, d_k), k (..., T_k, d_k), v (..., T_k, d_v) -> out (..., T_q, d_v), weights (..., T_q, T_k).
    The 1/sqrt(d_k) keeps the scores' variance near 1 whatever d_k, so the softmax does not saturate.
    """
    q, k, v = q.double(), k.double(), v.double()
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale  # (..., T_q, d_k) @ (..., d_k, T_k) -> (..., T_q, T_k)
    weights = masked_softmax(scores, mask)  # one distribution over the keys per query
    return weights @ v, weights  # (..., T_q, T_k) @ (..., T_k, d_v) -> (..., T_q, d_v)


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(..., T, d_model) -> (..., H, T, d_head); head h takes features h*d_head:(h+1)*d_head of each token."""
    # (..., T, d_model) -> (..., T, H, d_head) -> (..., H, T, d_head)
    return x.double().unflatten(-1, (n_heads, -1)).transpose(-3, -2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(..., H, T, d_head) -> (..., T, H * d_head), the inverse of split_heads."""
    # (..., H, T, d_head) -> (..., T, H, d_head) -> (..., T, H * d_head)
    return x.double().transpose(-3, -2).flatten(-2)


def multi_head_attention(state: dict, x_q, x_kv=None, mask=None, *, n_heads: int) -> torch.Tensor:
    """MultiHeadAttention.forward: self-attention over x_q, or cross-attention to x_kv when given.

    x_q (..., T_q, d_model), x_kv (..., T_k, d_model), mask broadcasting against (..., H, T_q, T_k)
    -> (..., T_q, d_model). Each head attends in its own d_head-dimensional subspace, scaled by
    1/sqrt(d_head), so H heads cost what one full-width head does.
    """
    x_q = x_q.double()
    x_kv = x_q if x_kv is None else x_kv.double()
    q = split_heads(linear(sub(state, "q_proj."), x_q), n_heads)  # (..., T_q, d_model) -> (..., H, T_q, d_head)
    k = split_heads(linear(sub(state, "k_proj."), x_kv), n_heads)  # (..., T_k, d_model) -> (..., H, T_k, d_head)
    v = split_heads(linear(sub(state, "v_proj."), x_kv), n_heads)  # (..., T_k, d_model) -> (..., H, T_k, d_head)
    out, _ = scaled_dot_product_attention(q, k, v, mask)  # the mask broadcasts over the heads
    return linear(sub(state, "out_proj."), merge_heads(out))  # (..., H, T_q, d_head) -> (..., T_q, d_model)


# --- feed-forward networks and positions (a3_ffn_positions) --------------------------------

def gelu(x: torch.Tensor) -> torch.Tensor:
    """x * Phi(x), Phi the standard normal CDF: the exact (erf) GELU of nn.GELU(), not the tanh one."""
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def silu(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(x) (also called Swish)."""
    return x * torch.sigmoid(x)


ACTIVATIONS = {"gelu": gelu, "relu": torch.relu}


def feed_forward(state: dict, x: torch.Tensor, activation: str = "gelu") -> torch.Tensor:
    """FeedForward.forward: down(act(up(x))), on every position on its own; (..., d_model) -> (..., d_model)."""
    h = ACTIVATIONS[activation](linear(sub(state, "up."), x))  # (..., d_model) -> (..., d_ff)
    return linear(sub(state, "down."), h)  # (..., d_ff) -> (..., d_model)


def swiglu(state: dict, x: torch.Tensor) -> torch.Tensor:
    """SwiGLU.forward: down(silu(gate(x)) * up(x)); the gate decides how much of each hidden unit passes."""
    h = silu(linear(sub(state, "gate."), x)) * linear(sub(state, "up."), x)  # (..., d_model) -> (..., d_ff)
    return linear(sub(state, "down."), h)  # (..., d_ff) -> (..., d_model)


def sinusoidal_positions(T: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """(T, d_model): PE[t, 2i] = sin(t / base**(2i/d_model)), PE[t, 2i+1] = cos(t / base**(2i/d_model)).

    Each column pair turns at its own frequency, so PE[t + k] is a fixed rotation of PE[t] (Vaswani et al.).
    Float64 keeps angles of thousands of radians exact to ~1e-13.
    """
    t = torch.arange(T, dtype=torch.float64)[:, None]  # (T, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (ceil(d_model / 2),)
    angles = t / base ** (two_i / d_model)  # (T, 1) / (ceil(d_model / 2),) -> (T, ceil(d_model / 2))
    pe = torch.stack([angles.sin(), angles.cos()], dim=-1)  # (T, ceil(d_model / 2), 2): sin to 2i, cos to 2i+1
    return pe.flatten(-2)[:, :d_model]  # (T, 2 * ceil(d_model / 2)) -> (T, d_model); an odd d_model drops a cos


# --- norms and the block (a4_residual_norm) --------------------------------------------------

def layer_norm(state: dict, x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """LayerNorm.forward: (x - mean) / sqrt(var + eps) * weight + bias over the last dimension.

    The variance is the biased one (divided by d_model), as nn.LayerNorm's; eps inside the square root
    keeps a constant row finite. An empty state is LayerNorm(elementwise_affine=False).
    """
    x = x.double()
    centred = x - x.mean(-1, keepdim=True)
    y = centred / torch.sqrt(centred.pow(2).mean(-1, keepdim=True) + eps)  # mean of squares after centring
    return y * state["weight"].double() + state["bias"].double() if state else y


def rms_norm(state: dict, x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """RMSNorm.forward: x / sqrt(mean(x**2) + eps) * weight: no centring and no bias, only the scale is removed."""
    x = x.double()
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * state["weight"].double()


NORMS = {"layer": layer_norm, "rms": rms_norm}


def transformer_block(state: dict, x: torch.Tensor, mask=None, *, n_heads: int, norm_first: bool = True,
                      activation: str = "gelu", norm: str = "layer", eps: float = EPS) -> torch.Tensor:
    """TransformerBlock.forward on x (..., T, d_model), mask True = may attend.

    Pre-LN (Xiong et al.) normalises only what enters each branch, so the residual stream is an
    identity path from input to output; Post-LN (Vaswani et al.) normalises the stream itself
    after each residual addition.
    """
    x = x.double()
    normalise = NORMS[norm]
    norm1, norm2, attn, ffn = (sub(state, p) for p in ("norm1.", "norm2.", "attn.", "ffn."))
    if norm_first:
        x = x + multi_head_attention(attn, normalise(norm1, x, eps), mask=mask, n_heads=n_heads)
        return x + feed_forward(ffn, normalise(norm2, x, eps), activation)
    x = normalise(norm1, x + multi_head_attention(attn, x, mask=mask, n_heads=n_heads), eps)
    return normalise(norm2, x + feed_forward(ffn, x, activation), eps)


# --- the language model (a5_transformer_lm) ----------------------------------------------------

def lm_positions(state: dict, T: int, d_model: int) -> torch.Tensor:
    """(T, d_model) position vectors of positions 0 .. T-1.

    Learned (GPT-2) when the state holds pos_emb.weight; otherwise sinusoids: the model's own
    pos_emb buffer when the state holds it (a judge replaying a model's float32 table), else
    computed here in float64.
    """
    if "pos_emb.weight" in state:
        return state["pos_emb.weight"].double()[:T]
    if "pos_emb" in state:
        return state["pos_emb"].double()[:T]
    return sinusoidal_positions(T, d_model)


def transformer_lm(state: dict, tokens: torch.Tensor, lengths=None, *, n_heads: int,
                   norm_first: bool = True) -> torch.Tensor:
    """TransformerLM.forward: int64 tokens (B, T) -> logits (B, T, vocab_size).

    logits[:, t] scores the token after tokens[:, :t + 1]: a causal mask hides later tokens, and
    lengths (B,), when given, also hides the padding after each sequence's real tokens. The
    blocks are the course's defaults (GELU, LayerNorm, biases); Post-LN blocks already end with a
    norm, so only the Pre-LN model has a final norm_f.
    """
    T = tokens.shape[1]
    x = state["tok_emb.weight"].double()[tokens]  # (B, T) -> (B, T, d_model)
    x = x + lm_positions(state, T, x.shape[-1])  # (B, T, d_model) + (T, d_model)
    mask = causal_mask(T, device=tokens.device)  # (T, T): query t sees keys 0 .. t
    if lengths is not None:
        mask = mask & padding_mask(lengths, T)  # (T, T) & (B, 1, 1, T) -> (B, 1, T, T)
    n_layers = len({name.split(".")[1] for name in state if name.startswith("blocks.")})
    for i in range(n_layers):
        x = transformer_block(sub(state, f"blocks.{i}."), x, mask, n_heads=n_heads, norm_first=norm_first)
    if norm_first:
        x = layer_norm(sub(state, "norm_f."), x)
    head = state.get("lm_head.weight", state["tok_emb.weight"])  # tied: the output layer is the embedding
    return x @ head.double().T  # (B, T, d_model) @ (d_model, V) -> (B, T, V)


def lm_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of tokens[:, 1:] under logits[:, :-1]: position t predicts token t + 1."""
    logits = logits.double()[:, :-1]  # the last position has no next token to score
    log_probs = logits - logits.logsumexp(-1, keepdim=True)  # log softmax; logsumexp shifts by the maximum
    return -log_probs.gather(-1, tokens[:, 1:, None]).mean()  # (B, T-1, V) -> (B, T-1, 1) -> ()


# --- parameter shapes and random weights --------------------------------------------------------
# Each *_shapes function lists a module's parameters as named_parameters() does (name -> shape);
# random_state draws weights for any of them, so every suite draws its weights by one rule.

def under(prefix: str, shapes: dict) -> dict:
    """shapes with every name prefixed, as a submodule's parameters are named in its parent."""
    return {prefix + name: shape for name, shape in shapes.items()}


def linear_shapes(d_in: int, d_out: int, bias: bool = True) -> dict:
    return {"weight": (d_out, d_in), **({"bias": (d_out,)} if bias else {})}


def mha_shapes(d_model: int, bias: bool = True) -> dict:
    projection = linear_shapes(d_model, d_model, bias)
    return {name: shape for p in PROJECTIONS for name, shape in under(f"{p}.", projection).items()}


def ffn_shapes(d_model: int, d_ff: int | None = None, bias: bool = True) -> dict:
    d_ff = 4 * d_model if d_ff is None else d_ff
    return {**under("up.", linear_shapes(d_model, d_ff, bias)), **under("down.", linear_shapes(d_ff, d_model, bias))}


def swiglu_shapes(d_model: int, d_ff: int, bias: bool = False) -> dict:
    return {**under("gate.", linear_shapes(d_model, d_ff, bias)), **ffn_shapes(d_model, d_ff, bias)}


def layer_norm_shapes(d_model: int, elementwise_affine: bool = True) -> dict:
    return {"weight": (d_model,), "bias": (d_model,)} if elementwise_affine else {}


def rms_norm_shapes(d_model: int) -> dict:
    return {"weight": (d_model,)}


def block_shapes(d_model: int, d_ff: int | None = None, bias: bool = True, norm: str = "layer") -> dict:
    """The block's norms keep their parameters whatever `bias` says: bias=False reaches attn and ffn only."""
    norm_shapes = layer_norm_shapes(d_model) if norm == "layer" else rms_norm_shapes(d_model)
    return {**under("norm1.", norm_shapes), **under("attn.", mha_shapes(d_model, bias)),
            **under("norm2.", norm_shapes), **under("ffn.", ffn_shapes(d_model, d_ff, bias))}


def lm_shapes(vocab_size: int, d_model: int, n_layers: int, max_len: int, d_ff: int | None = None,
              norm_first: bool = True, positions: str = "learned", tie_weights: bool = False) -> dict:
    """TransformerLM's parameters; sinusoids are a buffer and a tied lm_head.weight is tok_emb.weight, so
    neither is listed (a strict load_state_dict still wants lm_head.weight = tok_emb.weight when tied)."""
    shapes = {"tok_emb.weight": (vocab_size, d_model)}
    if positions == "learned":
        shapes["pos_emb.weight"] = (max_len, d_model)
    for i in range(n_layers):
        shapes.update(under(f"blocks.{i}.", block_shapes(d_model, d_ff)))
    if norm_first:
        shapes.update(under("norm_f.", layer_norm_shapes(d_model)))
    if not tie_weights:
        shapes["lm_head.weight"] = (vocab_size, d_model)
    return shapes


def random_state(shapes: dict, generator: torch.Generator) -> dict:
    """Random float64 weights for `shapes`, drawn from `generator` in the dict's order.

    Drawn at scales where every part of a module shows in its output: linear weights N(0, 1/fan_in)
    keep activations near unit size, embeddings are N(0, 1), linear biases N(0, 0.1**2). Norm weights
    1 + N(0, 0.2**2) and norm biases N(0, 0.2**2) are random too, so that swapping norm1 and norm2, or
    weight and bias, changes the output.
    """
    state = {}
    for name, shape in shapes.items():
        module, _, kind = name.rpartition(".")
        weight_shape = shapes[f"{module}.weight" if module else "weight"]
        noise = torch.randn(shape, generator=generator, dtype=torch.float64)
        if len(weight_shape) == 1:  # a norm: its weight is a vector
            state[name] = 1 + 0.2 * noise if kind == "weight" else 0.2 * noise
        elif module.endswith("emb"):
            state[name] = noise
        elif kind == "weight":
            state[name] = noise / math.sqrt(shape[1])
        else:
            state[name] = 0.1 * noise
    return state


# --- training stability (a6_training_stability) -----------------------------------------------
# Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts" (2017): the cosine schedule;
# Goyal et al., "Accurate, Large Minibatch SGD" (2017): the linear warm-up; Bachlechner et al., "ReZero is All You
# Need" (2020, and its code, github.com/majumderb/rezero: one scalar `resweight` per layer, shared by both
# sublayers); Xie et al., "ResiDual: Transformer with Dual Residual Connections" (2023, and its code,
# github.com/microsoft/ResiDual: the dual stream starts at the input, `res = x`); Radford et al. (2019) and
# nanoGPT's `_init_weights` for GPT-2's initialisation.

def lr_schedule(step: int, max_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """The learning rate of optimizer step `step` (0-based): linear warm-up, then a cosine down to min_lr.

    Steps 0 .. warmup_steps-1 rise linearly, max_lr * (step + 1) / warmup_steps: step 0 already trains and the
    last warm-up step is at max_lr. Steps warmup_steps .. total_steps follow a half cosine from max_lr to exactly
    min_lr, which every later step keeps. Needs 0 <= warmup_steps <= total_steps.
    """
    if step >= total_steps:
        return float(min_lr)
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / (total_steps - warmup_steps)  # 0 at the end of the warm-up, 1 at the end
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))


def rezero_shapes(d_model: int, d_ff: int | None = None) -> dict:
    """ReZeroBlock: attention and FFN (with biases), one scalar alpha, and no norm."""
    return {**under("attn.", mha_shapes(d_model)), **under("ffn.", ffn_shapes(d_model, d_ff)), "alpha": (1,)}


def rezero_block(state: dict, x: torch.Tensor, mask=None, *, n_heads: int) -> torch.Tensor:
    """ReZeroBlock.forward: x = x + alpha * attn(x); x + alpha * ffn(x), one alpha for both sublayers.

    No norm anywhere: with alpha = 0 (its initial value) the block is exactly the identity.
    """
    x, alpha = x.double(), state["alpha"].double()
    x = x + alpha * multi_head_attention(sub(state, "attn."), x, mask=mask, n_heads=n_heads)
    return x + alpha * feed_forward(sub(state, "ffn."), x)


def residual_shapes(d_model: int, n_layers: int, d_ff: int | None = None) -> dict:
    """ResiDual: n_layers blocks (norm1, attn, norm2, ffn, as TransformerBlock's) and the dual stream's norm_dual."""
    shapes = {}
    for i in range(n_layers):
        shapes.update(under(f"blocks.{i}.", block_shapes(d_model, d_ff)))
    return {**shapes, **under("norm_dual.", layer_norm_shapes(d_model))}


def residual_block(state: dict, x: torch.Tensor, dual: torch.Tensor, mask=None, *,
                   n_heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ResiDualBlock.forward: a Post-LN block on x; the dual stream adds each sublayer's raw output."""
    x, dual = x.double(), dual.double()
    a = multi_head_attention(sub(state, "attn."), x, mask=mask, n_heads=n_heads)
    x, dual = layer_norm(sub(state, "norm1."), x + a), dual + a
    f = feed_forward(sub(state, "ffn."), x)
    return layer_norm(sub(state, "norm2."), x + f), dual + f


def residual(state: dict, x: torch.Tensor, mask=None, *, n_heads: int) -> torch.Tensor:
    """ResiDual.forward (Xie et al., 2023): x_a + LayerNorm(x_d), where x_a is the Post-LN stream and x_d, which
    starts at the input, sums the raw outputs of every sublayer and is normalised once, at the end."""
    x = x.double()
    dual = x
    n_layers = len({name.split(".")[1] for name in state if name.startswith("blocks.")})
    for i in range(n_layers):
        x, dual = residual_block(sub(state, f"blocks.{i}."), x, dual, mask, n_heads=n_heads)
    return x + layer_norm(sub(state, "norm_dual."), dual)


RESIDUAL_PROJECTIONS = ("attn.out_proj.weight", "ffn.down.weight")  # what GPT-2 adds to the residual stream


def gpt2_init_spec(shapes: dict, n_layers: int) -> dict[str, tuple[float, float]]:
    """(mean, std) of every parameter after GPT-2's initialisation; std 0 means exactly the mean.

    Linear and Embedding weights N(0, 0.02**2), the residual projections (attention's out_proj and the FFN's
    down) N(0, (0.02 / sqrt(2 * n_layers))**2), biases 0, LayerNorm weights 1 and biases 0. Any other parameter
    (ReZero's alpha) is not listed: initialisation leaves it alone.
    """
    spec = {}
    for name, shape in shapes.items():
        module, _, kind = name.rpartition(".")
        if "norm" in module.rpartition(".")[2]:
            spec[name] = (1.0 if kind == "weight" else 0.0, 0.0)
        elif kind == "bias":
            spec[name] = (0.0, 0.0)
        elif name.endswith(RESIDUAL_PROJECTIONS):
            spec[name] = (0.0, 0.02 / math.sqrt(2 * n_layers))
        elif kind == "weight" and len(shape) == 2:
            spec[name] = (0.0, 0.02)
    return spec


# --- a7: linear attention, fast weights, the delta rule, a KV cache -------------------------------
# Katharopoulos et al., "Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention"
# (2020): causal linear attention with phi(x) = elu(x) + 1, eps added to the denominator
# (their code adds eps after the dot product phi(q_i) . z_i). Schlag, Irie & Schmidhuber, "Linear
# Transformers Are Secretly Fast Weight Programmers" (2021), section 4.2: the delta rule, with phi
# normalised by the sum of its components (their "sum normalisation", also in section 4).

LINEAR_EPS = 1e-6  # the default eps of linear attention, as the fast-transformers library's


def elu_feature(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = elu(x) + 1: positive, so every similarity phi(q) . phi(k) is > 0."""
    x = x.double()
    return torch.where(x > 0, x + 1, x.exp())  # elu(x) + 1 = x + 1 for x > 0, exp(x) otherwise


def sum_normalised_feature(x: torch.Tensor) -> torch.Tensor:
    """phi(x) / sum_j phi(x)_j with phi = elu + 1 (Schlag et al., 2021, section 4: "sum normalisation")."""
    phi = elu_feature(x)
    return phi / phi.sum(-1, keepdim=True)


def linear_attention(q, k, v, eps: float = LINEAR_EPS) -> torch.Tensor:
    """Causal linear attention in its quadratic form: (..., T, d_k), (..., T, d_k), (..., T, d_v) -> (..., T, d_v).

    out_i = sum_{j<=i} (phi(q_i) . phi(k_j)) v_j / (sum_{j<=i} phi(q_i) . phi(k_j) + eps). Written with the T x T
    matrix of similarities on purpose: another order of summation than any linear-time form.
    """
    fq, fk, v = elu_feature(q), elu_feature(k), v.double()
    T = q.shape[-2]
    sim = (fq @ fk.transpose(-2, -1)).masked_fill(~causal_mask(T, device=q.device), 0.0)  # (..., T, T)
    return (sim @ v) / (sim.sum(-1, keepdim=True) + eps)


def linear_attention_state(k, v, state=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The fast-weight memory after reading k, v: S = S0 + sum_j phi(k_j) v_j^T (..., d_k, d_v), z = z0 + sum_j
    phi(k_j) (..., d_k)."""
    fk, v = elu_feature(k), v.double()
    S, z = fk.transpose(-2, -1) @ v, fk.sum(-2)  # (..., d_k, T) @ (..., T, d_v); (..., d_k)
    if state is not None:
        S, z = S + state[0].double(), z + state[1].double()
    return S, z


def recurrent_linear_attention(q, k, v, eps: float = LINEAR_EPS, state=None):
    """The same as linear_attention, continued from ``state = (S0, z0)``: returns (out, (S, z))."""
    fq = elu_feature(q)
    T = q.shape[-2]
    sim = (fq @ elu_feature(k).transpose(-2, -1)).masked_fill(~causal_mask(T, device=q.device), 0.0)
    num, den = sim @ v.double(), sim.sum(-1, keepdim=True)  # (..., T, d_v), (..., T, 1)
    if state is not None:
        num = num + fq @ state[0].double()  # (..., T, d_k) @ (..., d_k, d_v)
        den = den + (fq * state[1].double()[..., None, :]).sum(-1, keepdim=True)
    return num / (den + eps), linear_attention_state(k, v, state)


def delta_rule(q, k, v, beta, state=None):
    """Schlag et al. (2021), section 4.2, one step at a time, with sum-normalised elu + 1 features:

        v_bar_i = S_{i-1}^T phi(k_i),   S_i = S_{i-1} + beta_i phi(k_i) (v_i - v_bar_i)^T,   out_i = S_i^T phi(q_i)

    q, k (..., T, d_k), v (..., T, d_v), beta (..., T) in (0, 1); S (..., d_k, d_v), zeros when state is None.
    Returns (out (..., T, d_v), S).
    """
    fq, fk, v, beta = sum_normalised_feature(q), sum_normalised_feature(k), v.double(), beta.double()
    S = (torch.zeros(*q.shape[:-2], q.shape[-1], v.shape[-1], dtype=torch.float64, device=q.device)
         if state is None else state.double())
    outs = []
    for i in range(q.shape[-2]):
        retrieved = (fk[..., i, :, None] * S).sum(-2)  # (..., d_v): what the memory holds for this key
        S = S + beta[..., i, None, None] * fk[..., i, :, None] * (v[..., i, :] - retrieved)[..., None, :]
        outs.append((fq[..., i, :, None] * S).sum(-2))  # read with the updated memory
    return torch.stack(outs, dim=-2), S


def lm_keys_values(state: dict, tokens: torch.Tensor, *, n_heads: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """What a KV cache holds after a Pre-LN TransformerLM read ``tokens`` (B, T): per block, the keys and values
    of its attention, split into heads, (B, n_heads, T, d_head) each."""
    T = tokens.shape[1]
    x = state["tok_emb.weight"].double()[tokens] + lm_positions(state, T, state["tok_emb.weight"].shape[1])
    mask = causal_mask(T, device=tokens.device)
    n_layers = len({name.split(".")[1] for name in state if name.startswith("blocks.")})
    cache = []
    for i in range(n_layers):
        block = sub(state, f"blocks.{i}.")
        h = layer_norm(sub(block, "norm1."), x)
        k, v = (split_heads(linear(sub(block, f"attn.{p}."), h), n_heads) for p in ("k_proj", "v_proj"))
        cache.append((k, v))  # (B, n_heads, T, d_head) each
        x = transformer_block(block, x, mask, n_heads=n_heads, norm_first=True)
    return cache
