"""Hidden suite for a5_transformer_lm: a GPT-style language model, its loss, a training step, generation.

Oracles are computed in float64 in the grader's process from the very weights loaded into the
student's model: a functional GPT (``F.layer_norm``, ``F.scaled_dot_product_attention`` with a
boolean causal mask, ``F.gelu``, ``F.linear``), ``F.cross_entropy`` on shifted targets, an SGD
step replayed on the gradient of that loss, and greedy or multinomial decoding replayed with a
``torch.Generator`` seeded like the one the student's ``generate`` gets.

``train_step`` and most ``generate`` checks use the notebook's given ``BigramLM`` (a lookup table of
next-token logits), so a bug in ``TransformerLM`` does not cost points there. ``train_step`` is judged
in the grader: its update and returned loss are replayed from the parameters read before and after it,
on the reference loss. Only when that fails and the student's ``lm_loss`` is wrong on random logits in
a worker of its own (never the worker that ran ``train_step``, whose code could change ``lm_loss`` after
the fact) is the step replayed on that ``lm_loss``, so a bug in the loss costs points in ``lm_loss``
only. The TransformerLM part of the generate checks is judged by the reference GPT's greedy decoding,
not by the student's model, and runs when that model, asked in a worker of its own, computes the
reference GPT.

References: Radford et al., "Improving Language Understanding by Generative Pre-Training" (2018) and
"Language Models are Unsupervised Multitask Learners" (2019); Vaswani et al. (2017); Press & Wolf,
"Using the Output Embedding to Improve Language Models" (2017).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from autograder.checks import (guess, 
    expect_close,
    expect_equal,
    expect_no_backward_error,
    expect_tensor,
    expect_unchanged,
    fail,
    tolerance,
)
from autograder.session import CheckFailed, StudentRaised, WorkerLost
from autograder.suites.common import load_weights
from autograder.hidden import hidden
from autograder.wire import Foreign, WireTensor




# --- small helpers ------------------------------------------------------------------------

def wire(tensor: torch.Tensor) -> WireTensor:
    """A grader-side tensor dressed as a returned value, for checks that take one (slices of results).

    Its device is where its values are (results arrive on the CPU), not the worker's: the device check
    (``lm_keeps_dtype_and_inputs``) reads a returned value itself, never one of these.
    """
    return WireTensor(tensor=tensor, dtype=str(tensor.dtype).removeprefix("torch."), shape=tuple(tensor.shape),
                      type_name="torch.Tensor", requires_grad=False, has_grad_fn=False, device=str(tensor.device))


def randint(ctx, high: int, *shape) -> torch.Tensor:
    return torch.randint(0, high, shape, generator=ctx.generator)


def values(result, what: str, **expect) -> torch.Tensor:
    return expect_tensor(result, what, **expect)


def _kind(value) -> str:
    if isinstance(value, WireTensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, Foreign):
        return f"a {value.type_name}"
    return "None" if value is None else f"a {type(value).__name__}"


# --- TransformerLM: configuration, expected parameters, random weights, the oracle ----------

class Config:
    """One TransformerLM configuration: its arguments, its expected parameters, how to name it in feedback."""

    def __init__(self, vocab_size=11, d_model=16, n_heads=2, n_layers=2, max_len=12, d_ff=None,
                 norm_first=True, positions="learned", tie_weights=False):
        self.vocab_size, self.d_model, self.n_heads, self.n_layers, self.max_len = vocab_size, d_model, n_heads, n_layers, max_len
        self.d_ff = 4 * d_model if d_ff is None else d_ff
        self.norm_first, self.positions, self.tie_weights = norm_first, positions, tie_weights
        self.explicit_d_ff = d_ff

    def args(self) -> tuple:
        return (self.vocab_size, self.d_model, self.n_heads, self.n_layers, self.max_len)

    def kwargs(self) -> dict:
        kw = {"norm_first": self.norm_first, "positions": self.positions, "tie_weights": self.tie_weights}
        if self.explicit_d_ff is not None:
            kw["d_ff"] = self.explicit_d_ff
        return kw

    def call(self) -> str:
        extra = ", ".join(f"{k}={v!r}" for k, v in self.kwargs().items()
                          if (k, v) not in {("norm_first", True), ("positions", "learned"), ("tie_weights", False)})
        return f"TransformerLM({', '.join(map(str, self.args()))}{', ' + extra if extra else ''})"

    def parameter_shapes(self) -> dict[str, tuple]:
        """Every parameter and its shape, as named_parameters() lists them (a tied lm_head.weight is listed once)."""
        V, D, L, d_ff = self.vocab_size, self.d_model, self.n_layers, self.d_ff
        shapes = {"tok_emb.weight": (V, D)}
        if self.positions == "learned":
            shapes["pos_emb.weight"] = (self.max_len, D)
        for i in range(L):
            p = f"blocks.{i}."
            for norm in ("norm1", "norm2"):
                shapes[f"{p}{norm}.weight"] = (D,)
                shapes[f"{p}{norm}.bias"] = (D,)
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                shapes[f"{p}attn.{proj}.weight"] = (D, D)
                shapes[f"{p}attn.{proj}.bias"] = (D,)
            shapes[f"{p}ffn.up.weight"], shapes[f"{p}ffn.up.bias"] = (d_ff, D), (d_ff,)
            shapes[f"{p}ffn.down.weight"], shapes[f"{p}ffn.down.bias"] = (D, d_ff), (D,)
        if self.norm_first:
            shapes["norm_f.weight"], shapes["norm_f.bias"] = (D,), (D,)
        if not self.tie_weights:
            shapes["lm_head.weight"] = (V, D)
        return shapes


def random_state(ctx, cfg: Config) -> dict[str, torch.Tensor]:
    """Weights at a scale where every part matters: unit-variance embeddings, 1/sqrt(fan_in) matrices."""
    state = {}
    for name, shape in sorted(cfg.parameter_shapes().items()):
        if "norm" in name:
            state[name] = (1.0 if name.endswith("weight") else 0.0) + ctx.randn(*shape, scale=0.2)
        elif name.endswith("bias"):
            state[name] = ctx.randn(*shape, scale=0.1)
        elif name in ("tok_emb.weight", "pos_emb.weight"):
            state[name] = ctx.randn(*shape)
        else:
            state[name] = ctx.randn(*shape, scale=1 / math.sqrt(shape[1]))
    if cfg.tie_weights:
        state["lm_head.weight"] = state["tok_emb.weight"]  # state_dict() lists a tied tensor under both names
    return state


def check_structure(model, cfg: Config) -> None:
    """Submodules and parameters as the API names them; a failure names the likely slip."""
    subs = model.submodules
    what = cfg.call()
    kinds = {"tok_emb": ("torch.nn.modules.sparse.Embedding", "nn.Embedding(vocab_size, d_model)"),
             "blocks": ("torch.nn.modules.container.ModuleList", "an nn.ModuleList of TransformerBlock"),
             "lm_head": ("torch.nn.modules.linear.Linear", "nn.Linear(d_model, vocab_size, bias=False)")}
    if cfg.positions == "learned":
        kinds["pos_emb"] = ("torch.nn.modules.sparse.Embedding", "nn.Embedding(max_len, d_model)")
    for name, (kind, want) in kinds.items():
        if name not in subs:
            fail(f"{what} has no submodule named {name}", f"Create self.{name} = {want} in __init__")
        if subs[name]["type"] != kind:
            fail(f"{what}.{name} is a {subs[name]['type'].rpartition('.')[2]}, expected {want}")
    blocks = sorted(n for n in subs if n.startswith("blocks.") and n.count(".") == 1)
    if len(blocks) != cfg.n_layers:
        fail(f"{what} has {len(blocks)} distinct block(s), expected n_layers = {cfg.n_layers}",
             "Create a new TransformerBlock for every layer: nn.ModuleList(TransformerBlock(...) for _ in range(n_layers)); "
             "[block] * n_layers repeats one block (shared weights)")
    for name in blocks:
        if not subs[name]["type"].endswith(".TransformerBlock"):
            fail(f"{what}.{name} is a {subs[name]['type'].rpartition('.')[2]}, expected the given TransformerBlock")
    norm_f = subs.get("norm_f", {}).get("type", "")
    if cfg.norm_first and not norm_f.endswith("LayerNorm"):
        fail(f"{what}.norm_f is {norm_f.rpartition('.')[2] or 'missing'}, expected a LayerNorm(d_model)",
             "With Pre-LN blocks the residual stream is never normalised: apply a final LayerNorm before lm_head")
    if not cfg.norm_first and norm_f != "torch.nn.modules.linear.Identity":
        fail(f"{what}.norm_f is {norm_f.rpartition('.')[2] or 'missing'}, expected nn.Identity() when norm_first=False",
             "A Post-LN block already ends with a LayerNorm, so the final norm is the identity")
    got = {name: tuple(t.shape) for name, t in model.parameters.items()}
    want = cfg.parameter_shapes()
    if got == want:
        return
    extra, missing = sorted(set(got) - set(want)), sorted(set(want) - set(got))
    wrong = sorted(n for n in set(got) & set(want) if got[n] != want[n])
    message = (f"{what} has unexpected parameters: missing {missing[:4] or 'none'}, extra {extra[:4] or 'none'}, "
               f"wrong shape {[f'{n} {got[n]} (expected {want[n]})' for n in wrong][:3] or 'none'}")
    if "lm_head.bias" in extra:
        fail(message, "lm_head has no bias: nn.Linear(d_model, vocab_size, bias=False)")
    if "pos_emb.weight" in wrong:
        fail(message, "pos_emb needs one row per position 0 .. max_len-1: nn.Embedding(max_len, d_model)")
    if cfg.positions == "sinusoidal" and "pos_emb.weight" in extra:
        fail(message, "Sinusoidal positions are fixed: register them as a buffer, not a parameter")
    if cfg.tie_weights and "lm_head.weight" in extra:
        fail(message, "With tie_weights=True, lm_head.weight must be the very Parameter tok_emb.weight "
                      "(self.lm_head.weight = self.tok_emb.weight), not a copy")
    fail(message, "Build tok_emb, pos_emb, blocks, norm_f and lm_head exactly as the exercise lists them")


def build_lm(ctx, cfg: Config, dtype=torch.float64, state: dict | None = None):
    """The student's TransformerLM with the test's weights loaded, checked against the API first."""
    model = ctx.construct("TransformerLM", *cfg.args(), **cfg.kwargs())
    check_structure(model, cfg)
    state = random_state(ctx, cfg) if state is None else state
    model.set_mode(train=False, dtype=dtype)
    load_weights(model, {k: v.to(dtype) for k, v in state.items()})
    return model, state


def _layer_norm(x, S, name):
    D = x.shape[-1]
    return F.layer_norm(x, (D,), S[f"{name}.weight"], S[f"{name}.bias"], eps=1e-5)


def _attention(x, S, p, n_heads, mask):
    B, T, D = x.shape

    def heads(proj):  # (B, T, D) -> (B, H, T, d_head)
        y = F.linear(x, S[f"{p}attn.{proj}.weight"], S[f"{p}attn.{proj}.bias"])
        return y.reshape(B, T, n_heads, D // n_heads).transpose(1, 2)

    out = F.scaled_dot_product_attention(heads("q_proj"), heads("k_proj"), heads("v_proj"), attn_mask=mask)
    out = out.transpose(1, 2).reshape(B, T, D)  # (B, H, T, d_head) -> (B, T, D)
    return F.linear(out, S[f"{p}attn.out_proj.weight"], S[f"{p}attn.out_proj.bias"])


def _ffn(x, S, p):
    return F.linear(F.gelu(F.linear(x, S[f"{p}ffn.up.weight"], S[f"{p}ffn.up.bias"])),
                    S[f"{p}ffn.down.weight"], S[f"{p}ffn.down.bias"])


def oracle_logits(state, tokens, cfg: Config, *, pos_table=None, bug: str | None = None):
    """Logits of the reference GPT in float64; ``bug`` names a known mistake to reproduce instead."""
    S = {k: v.to(torch.float64) for k, v in state.items()}
    T = tokens.shape[1]
    table = S["pos_emb.weight"] if pos_table is None else pos_table.to(torch.float64)
    positions = table[1:T + 1] if bug == "positions_from_1" else table[:T]
    x = S["tok_emb.weight"][tokens]
    if bug == "scaled_embeddings":
        x = x * math.sqrt(cfg.d_model)
    if bug not in ("no_positions", "positions_after_blocks"):
        x = x + positions
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    mask = {"no_causal_mask": None, "upper_triangle": causal.T}.get(bug, causal)
    pre_ln = cfg.norm_first or bug in ("post_ln_ignored", "post_ln_ignored_with_norm_f")
    for i in range(cfg.n_layers):
        p = f"blocks.{i}."
        if pre_ln:
            x = x + _attention(_layer_norm(x, S, f"{p}norm1"), S, p, cfg.n_heads, mask)
            x = x + _ffn(_layer_norm(x, S, f"{p}norm2"), S, p)
        else:
            x = _layer_norm(x + _attention(x, S, p, cfg.n_heads, mask), S, f"{p}norm1")
            x = _layer_norm(x + _ffn(x, S, p), S, f"{p}norm2")
    if bug == "positions_after_blocks":
        x = x + positions
    if (cfg.norm_first and bug != "no_final_norm") or bug == "post_ln_ignored_with_norm_f":
        D = cfg.d_model
        x = F.layer_norm(x, (D,), S.get("norm_f.weight"), S.get("norm_f.bias"), eps=1e-5)
    return x @ S.get("lm_head.weight", S["tok_emb.weight"]).T  # (B, T, D) @ (D, V) -> (B, T, V)


LM_BUGS = {
    "no_final_norm": "the Pre-LN model without its final LayerNorm: norm_f is never applied before lm_head",
    "no_causal_mask": "a model without the causal mask: every position attends to the whole sequence",
    "upper_triangle": "a mask of the upper triangle (triu) instead of the lower (tril): positions attend to later tokens",
    "positions_after_blocks": "position embeddings added after the blocks instead of to the token embeddings",
    "no_positions": "a model that never adds the position embeddings",
    "positions_from_1": "position embeddings of positions 1 .. T instead of 0 .. T-1",
    "scaled_embeddings": "token embeddings multiplied by sqrt(d_model) (the exercise adds them unscaled)",
}


def lm_suspects(state, tokens, cfg: Config, pos_table=None) -> dict[str, torch.Tensor]:
    bugs = dict(LM_BUGS)
    if not cfg.norm_first:
        del bugs["no_final_norm"]
        bugs["post_ln_ignored"] = "Pre-LN blocks although norm_first=False: pass norm_first to every TransformerBlock"
        bugs["post_ln_ignored_with_norm_f"] = "Pre-LN blocks and a final norm although norm_first=False"
    if tokens.shape[1] >= cfg.max_len:
        del bugs["positions_from_1"]
    return {description: oracle_logits(state, tokens, cfg, pos_table=pos_table, bug=bug) for bug, description in bugs.items()}


def sinusoids(T: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    position = torch.arange(T, dtype=torch.float64)[:, None]
    angle = position / base ** (torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    pe = torch.zeros(T, d_model, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(angle), torch.cos(angle[:, : d_model // 2])
    return pe


# --- TransformerLM ------------------------------------------------------------------------

# Tolerances for a whole model against the float64 oracle with the same weights. float64 roundoff through
# two layers stays near 1e-13; 10x (logits) and 100x (gradients, one more pass) the per-op tolerance of
# checks.TOLERANCES leave room for other summation orders, while every bug we know of moves logits by > 1e-3.
# Causality and padding compare the model with itself, so they use the plain float64 tolerance.
LOGITS_TOL = tolerance(torch.float64, 10)
GRADIENT_TOL = tolerance(torch.float64, 100)
# The sinusoid buffer is computed in float32 (the given sinusoidal_positions): errors below 1e-6 for
# angles up to max_len; a shifted or transposed table is off by more than 0.01.
SINUSOID_TOL = tolerance(torch.float32, 10)

@hidden("TransformerLM", points=1, group="shapes")
def test_lm_structure(ctx):
    """has tok_emb, pos_emb, blocks (n_layers TransformerBlocks), norm_f and a bias-free lm_head, with the right shapes"""
    for cfg in (Config(vocab_size=13, d_model=16, n_heads=2, n_layers=3, max_len=9),
                Config(vocab_size=7, d_model=12, n_heads=3, n_layers=1, max_len=5, d_ff=20, norm_first=False)):
        check_structure(ctx.construct("TransformerLM", *cfg.args(), **cfg.kwargs()), cfg)


@hidden("TransformerLM", points=1, group="shapes")
def test_lm_logits_shape(ctx):
    """forward returns logits of shape (B, T, vocab_size) for T from 1 to max_len"""
    cfg = Config(vocab_size=7, d_model=8, n_heads=2, n_layers=1, max_len=6)
    model = ctx.construct("TransformerLM", *cfg.args())
    for B, T in [(2, 6), (1, 1), (3, 4)]:
        tokens = randint(ctx, 7, B, T)
        expect_tensor(ctx.forward(model, tokens).value, f"{cfg.call()} logits for tokens of shape ({B}, {T})",
                      shape=(B, T, 7), dtype=torch.float32,
                      hint="Return lm_head(norm_f(x)): one row of vocab_size logits per position")


@hidden("TransformerLM", points=3, group="numerics")
def test_lm_matches_reference(ctx):
    """logits match a float64 reference GPT with the same weights, Pre-LN and Post-LN"""
    for cfg in (Config(vocab_size=13, d_model=16, n_heads=2, n_layers=2, max_len=12),
                Config(vocab_size=9, d_model=12, n_heads=3, n_layers=2, max_len=8, norm_first=False)):
        model, state = build_lm(ctx, cfg)
        tokens = randint(ctx, cfg.vocab_size, 3, cfg.max_len - 2)
        got = ctx.forward(model, tokens).value
        what = f"{cfg.call()} logits"
        expect_tensor(got, f"{what} of a float64 model", dtype=torch.float64,
                      hint="Create positions and masks without a dtype, or with the embeddings' dtype")
        expect_close(got, oracle_logits(state, tokens, cfg), what, **LOGITS_TOL,
                     suspects=lm_suspects(state, tokens, cfg),
                     hint="x = tok_emb(tokens) + pos_emb(positions 0..T-1); every block with the causal mask; "
                          "then norm_f and lm_head")


@hidden("TransformerLM", points=1, group="numerics")
def test_lm_sinusoidal_positions(ctx):
    """positions="sinusoidal" keeps a fixed pos_emb buffer of sinusoids (no parameter) and uses it"""
    cfg = Config(vocab_size=10, d_model=16, n_heads=2, n_layers=1, max_len=11, positions="sinusoidal")
    probe = ctx.construct("TransformerLM", *cfg.args(), **cfg.kwargs())
    described = probe.describe()
    if any(name.startswith("pos_emb") for name in described["params"]):
        fail(f"{cfg.call()} has a parameter pos_emb, so the sinusoids would be trained",
             "Register them as a buffer: self.register_buffer('pos_emb', sinusoidal_positions(max_len, d_model))")
    buffer = described["buffers"].get("pos_emb")
    if not isinstance(buffer, WireTensor):
        fail(f"{cfg.call()} has no buffer named pos_emb (its buffers: {sorted(described['buffers'])[:4]})",
             "self.register_buffer('pos_emb', sinusoidal_positions(max_len, d_model))")
    want = sinusoids(cfg.max_len, cfg.d_model)
    expect_close(buffer, want, "the pos_emb buffer", **SINUSOID_TOL,
                 suspects={"sinusoidal_positions(max_len + 1, d_model) without its first row": sinusoids(cfg.max_len + 1, cfg.d_model)[1:]},
                 hint="pos_emb = sinusoidal_positions(max_len, d_model): one row per position 0 .. max_len-1")
    model, state = build_lm(ctx, cfg)
    # The oracle adds the judged model's own sinusoids (now float64), so they are checked on that model too:
    # not only on the first one built.
    judged = model.describe()["buffers"].get("pos_emb")
    expect_close(judged, want, "the pos_emb buffer of a second model", **SINUSOID_TOL,
                 hint="Every TransformerLM(..., positions=\"sinusoidal\") holds sinusoidal_positions(max_len, d_model)")
    table = judged.tensor
    tokens = randint(ctx, cfg.vocab_size, 2, 9)
    expect_close(ctx.forward(model, tokens).value, oracle_logits(state, tokens, cfg, pos_table=table),
                 f"{cfg.call()} logits", **LOGITS_TOL,
                 suspects=lm_suspects(state, tokens, cfg, pos_table=table),
                 hint="Add pos_emb[:T] (the first T rows of the buffer) to the token embeddings")


@hidden("TransformerLM", points=2, group="properties")
def test_lm_is_causal(ctx):
    """changing tokens after position t leaves the logits at positions 0..t unchanged"""
    cfg = Config(vocab_size=11, d_model=16, n_heads=2, n_layers=2, max_len=12)
    model, _ = build_lm(ctx, cfg)
    tokens = randint(ctx, cfg.vocab_size, 2, 12)
    base = values(ctx.forward(model, tokens).value, f"{cfg.call()} logits", shape=(2, 12, 11))
    for t in (0, 4, 10):
        changed = tokens.clone()
        changed[:, t + 1:] = (tokens[:, t + 1:] + 1 + randint(ctx, cfg.vocab_size - 1, 2, 11 - t)) % cfg.vocab_size
        out = values(ctx.forward(model, changed).value, f"{cfg.call()} logits", shape=(2, 12, 11))
        expect_close(wire(out[:, :t + 1]), base[:, :t + 1],
                     f"logits at positions 0..{t} after changing only the tokens at positions {t + 1}..11",
                     **tolerance(torch.float64),
                     hint="Position t must not see later tokens: pass causal_mask(T) (True on and below the diagonal) "
                          "to every block")


@hidden("TransformerLM", points=1, group="properties")
def test_lm_masks_padding(ctx):
    """with lengths, real tokens are unaffected and padded keys are hidden (the causal AND the padding mask)"""
    cfg = Config(vocab_size=11, d_model=16, n_heads=2, n_layers=2, max_len=10)
    model, _ = build_lm(ctx, cfg)
    tokens, lengths = randint(ctx, cfg.vocab_size, 3, 8), torch.tensor([8, 3, 5])
    plain = values(ctx.forward(model, tokens).value, f"{cfg.call()} logits", shape=(3, 8, 11))
    what = f"{cfg.call()} logits with lengths={lengths.tolist()}"
    padded = values(ctx.forward(model, tokens, lengths=lengths).value, what, shape=(3, 8, 11))
    for b, n in enumerate(lengths.tolist()):
        expect_close(wire(padded[b, :n]), plain[b, :n], f"logits of the {n} real tokens of row {b} with lengths given",
                     **tolerance(torch.float64),
                     hint="A real token's logits changed when lengths was given. Padding follows the real tokens, so "
                          "combine the masks, mask = causal_mask(T) & padding_mask(lengths, T): do not replace the causal mask")
    # A padded position sees the real tokens and its own token only: the other padded tokens must not matter.
    changed = tokens.clone()
    for b, n in enumerate(lengths.tolist()):
        changed[b, n:] = (tokens[b, n:] + 1 + randint(ctx, cfg.vocab_size - 1, 8 - n)) % cfg.vocab_size
        changed[b, -1] = tokens[b, -1]
    out = values(ctx.forward(model, changed, lengths=lengths).value, what, shape=(3, 8, 11))
    expect_close(wire(out[1:, -1]), padded[1:, -1], "logits at the last (padded) position after changing only the other padded tokens",
                 **tolerance(torch.float64),
                 hint="lengths is ignored: padded keys must be hidden, mask = causal_mask(T) & padding_mask(lengths, T)")


# Reference TransformerLMs, 200 seeds over the three configurations below, 8 x 31 predictions each:
# |loss - ln V| <= 0.025. Logits with standard deviation s cost about s**2 / 2 nats above ln V; GPT-2's
# N(0, 0.02**2) weights give s**2 = d_model * 0.02**2 = 0.013 here. PyTorch's default nn.Linear init gives
# s**2 = 1/3 (+0.17 nats), and a tied N(0, 1) embedding s**2 = d_model (+15 nats). 0.1 sits between them.
INITIAL_LOSS_TOLERANCE = 0.1


@hidden("TransformerLM", points=1, group="properties")
def test_lm_initial_loss_near_ln_vocab(ctx):
    """a freshly built model predicts nearly uniformly: its loss is within 0.1 of ln(vocab_size)"""
    V = 40
    for cfg in (Config(vocab_size=V, d_model=32, n_heads=4, n_layers=2, max_len=32),
                Config(vocab_size=V, d_model=32, n_heads=4, n_layers=2, max_len=32, tie_weights=True),
                Config(vocab_size=V, d_model=32, n_heads=4, n_layers=2, max_len=32, norm_first=False)):
        excess = []
        for _ in range(2):
            model = ctx.construct("TransformerLM", *cfg.args(), **cfg.kwargs())
            tokens = randint(ctx, V, 8, 32)
            logits = values(ctx.forward(model, tokens).value, f"{cfg.call()} logits", shape=(8, 32, V))
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, V).double(), tokens[:, 1:].reshape(-1))
            excess.append(loss.item() - math.log(V))
        mean = sum(excess) / len(excess)
        if not math.isfinite(mean) or abs(mean) > INITIAL_LOSS_TOLERANCE:
            fail(f"freshly built {cfg.call()} models have a loss of ln({V}) {mean:+.3g} on random tokens, "
                 f"expected ln({V}) = {math.log(V):.3f} within {INITIAL_LOSS_TOLERANCE}",
                 "Initial logits are too large, so the model starts confidently wrong: initialise every nn.Linear and "
                 "nn.Embedding weight from N(0, 0.02**2) and every bias to 0 (GPT-2), before tying weights")


@hidden("TransformerLM", points=1, group="properties")
def test_lm_ties_weights(ctx):
    """tie_weights=True makes lm_head.weight and tok_emb.weight one shared tensor, used by both"""
    cfg = Config(vocab_size=11, d_model=16, n_heads=2, n_layers=1, max_len=8)
    untied = ctx.construct("TransformerLM", *cfg.args())
    if ctx.builtin("shares_parameter", untied, "lm_head.weight", "tok_emb.weight"):
        fail(f"{cfg.call()} ties lm_head.weight to tok_emb.weight although tie_weights=False")
    cfg.tie_weights = True
    tied = ctx.construct("TransformerLM", *cfg.args(), **cfg.kwargs())
    if not ctx.builtin("shares_parameter", tied, "lm_head.weight", "tok_emb.weight"):
        fail("with tie_weights=True, lm_head.weight and tok_emb.weight are two different tensors",
             "Assign the Parameter itself: self.lm_head.weight = self.tok_emb.weight. Copying the values (or wrapping "
             "them in a new nn.Parameter) gives two tensors that training pulls apart")
    model, state = build_lm(ctx, cfg)
    tokens, g = randint(ctx, cfg.vocab_size, 2, 7), ctx.randn(2, 7, cfg.vocab_size)
    result = ctx.forward(model, tokens, grad={"wrt": [], "grad_outputs": [g]})
    leaves = {k: v.clone().requires_grad_(True) for k, v in state.items() if k != "lm_head.weight"}
    want = oracle_logits(leaves, tokens, cfg)
    expect_close(result.value, want.detach(), f"{cfg.call()} logits", **LOGITS_TOL,
                 suspects=lm_suspects(state, tokens, cfg))
    want.backward(g)
    expect_no_backward_error(result, "TransformerLM")
    got = result.param_grads.get("tok_emb.weight")
    if got is None:
        fail("tok_emb.weight received no gradient in the tied model")
    expect_close(got, leaves["tok_emb.weight"].grad, "gradient of the shared tok_emb.weight / lm_head.weight",
                 **GRADIENT_TOL, hint="The shared tensor's gradient sums its use as embedding and as output layer")


@hidden("TransformerLM", points=2, group="gradients")
def test_lm_gradients_match(ctx):
    """every parameter receives the gradient the reference gives it"""
    cfg = Config(vocab_size=11, d_model=16, n_heads=2, n_layers=2, max_len=10)
    model, state = build_lm(ctx, cfg)
    tokens, g = randint(ctx, cfg.vocab_size, 2, 9), ctx.randn(2, 9, cfg.vocab_size)
    result = ctx.forward(model, tokens, grad={"wrt": [], "grad_outputs": [g]})
    values(result.value, f"{cfg.call()} logits", shape=(2, 9, 11))
    expect_no_backward_error(result, "TransformerLM")
    leaves = {k: v.clone().requires_grad_(True) for k, v in state.items()}
    oracle_logits(leaves, tokens, cfg).backward(g)
    grads = result.param_grads
    for name in cfg.parameter_shapes():
        got = grads.get(name)
        if got is None:
            fail(f"{name} received no gradient",
                 f"Is {name.rpartition('.')[0]} used in forward, on a path that is not detached (no .detach(), .data or torch.no_grad())?")
        expect_close(got, leaves[name].grad, f"gradient of {name}", **GRADIENT_TOL,
                     hint="The logits match only if every part is used exactly as the reference uses it")


@hidden("TransformerLM", points=1, group="hygiene")
def test_lm_keeps_dtype_and_inputs(ctx):
    """keeps the model's dtype, leaves tokens unmodified, is deterministic in eval()"""
    cfg = Config(vocab_size=9, d_model=8, n_heads=2, n_layers=1, max_len=6)
    for dtype in (torch.float32, torch.float64):
        model, _ = build_lm(ctx, cfg, dtype=dtype)
        tokens = randint(ctx, 9, 2, 5)
        first = ctx.forward(model, tokens)
        expect_tensor(first.value, f"logits of a {str(dtype)[6:]} model", dtype=dtype, device=ctx.session.device,
                      hint="Positions and masks must not change the dtype: no .float(), no tensors created with a fixed dtype")
        expect_unchanged(tokens, first.args_after[0], "the tokens")
        expect_equal(ctx.forward(model, tokens).value, first.value.tensor, "a second forward on the same tokens",
                     hint="In eval() mode the output must be deterministic")


# --- lm_loss ------------------------------------------------------------------------------

def reference_loss(logits, tokens):
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, V).double(), tokens[:, 1:].reshape(-1))


def loss_suspects(logits, tokens) -> dict[str, torch.Tensor]:
    x = logits.double()
    B, _, V = x.shape
    ce = functools.partial(F.cross_entropy, reduction="mean")
    flat = lambda t: t.reshape(-1, V)
    return {
        "the loss without the shift: logits[:, t] scored against tokens[:, t], so the model learns to copy its input":
            ce(flat(x), tokens.reshape(-1)),
        "logits[:, 1:] scored against tokens[:, :-1]: the shift goes the wrong way":
            ce(flat(x[:, 1:]), tokens[:, :-1].reshape(-1)),
        "targets tokens.roll(-1, dims=1): the last position is scored against the first token":
            ce(flat(x), tokens.roll(-1, dims=1).reshape(-1)),
        "the summed, not averaged, cross-entropy": ce(flat(x[:, :-1]), tokens[:, 1:].reshape(-1), reduction="sum"),
        "cross-entropy summed over each sequence, then averaged over the batch":
            ce(flat(x[:, :-1]), tokens[:, 1:].reshape(-1), reduction="sum") / B,
        "cross-entropy of softmax probabilities: F.cross_entropy applies log_softmax itself, so pass raw logits":
            ce(flat(torch.softmax(x[:, :-1], -1)), tokens[:, 1:].reshape(-1)),
        "F.nll_loss on raw logits, without log_softmax": F.nll_loss(flat(x[:, :-1]), tokens[:, 1:].reshape(-1)),
    }


@hidden("lm_loss", points=1, group="shapes")
def test_loss_is_a_scalar(ctx):
    """returns a 0-dimensional tensor of the logits' dtype"""
    for (B, T, V), dtype in [((2, 5, 7), torch.float32), ((1, 2, 3), torch.float64), ((4, 9, 11), torch.float32)]:
        logits, tokens = ctx.randn(B, T, V, dtype=dtype), randint(ctx, V, B, T)
        expect_tensor(ctx.call("lm_loss", logits, tokens), f"lm_loss of logits of shape ({B}, {T}, {V})", shape=(), dtype=dtype,
                      hint="Return one number: the mean over all B * (T - 1) predictions (reduction='mean'), as a tensor")


@hidden("lm_loss", points=2, group="numerics")
def test_loss_matches_reference(ctx):
    """is the mean cross-entropy of tokens[:, 1:] given logits[:, :-1]"""
    for B, T, V in [(3, 8, 10), (2, 12, 5)]:
        logits, tokens = ctx.randn(B, T, V, scale=2.0), randint(ctx, V, B, T)
        expect_close(ctx.call("lm_loss", logits, tokens), reference_loss(logits, tokens), f"lm_loss on ({B}, {T}, {V}) logits",
                     **tolerance(torch.float64), suspects=loss_suspects(logits, tokens),
                     hint="F.cross_entropy(logits[:, :-1].reshape(-1, V), tokens[:, 1:].reshape(-1))")
    logits, tokens = ctx.randn(2, 6, 9, dtype=torch.float32, scale=2.0), randint(ctx, 9, 2, 6)
    expect_close(ctx.call("lm_loss", logits, tokens), reference_loss(logits, tokens), "lm_loss on float32 logits",
                 **tolerance(torch.float32), suspects=loss_suspects(logits, tokens))


@hidden("lm_loss", points=1, group="numerics")
def test_loss_is_stable_for_large_logits(ctx):
    """stays finite and exact for logits of size 1000 (float32)"""
    logits, tokens = ctx.randn(2, 7, 6, dtype=torch.float32, scale=300.0), randint(ctx, 6, 2, 7)
    expect_close(ctx.call("lm_loss", logits, tokens), reference_loss(logits, tokens), "lm_loss on logits of size ~1000",
                 **tolerance(torch.float32), hint="log(softmax(x)) underflows to log(0) = -inf: use F.cross_entropy "
                                                  "(or F.log_softmax), which subtracts the maximum first")


@hidden("lm_loss", points=1, group="gradients")
def test_loss_gradient_matches(ctx):
    """its gradient w.r.t. the logits matches, and is exactly 0 at the last position"""
    logits, tokens = ctx.randn(3, 6, 8), randint(ctx, 8, 3, 6)
    result = ctx.call_full("lm_loss", logits, tokens, grad={"wrt": [0], "grad_outputs": [torch.tensor(1.0, dtype=torch.float64)]})
    expect_tensor(result.value, "lm_loss", shape=(), dtype=torch.float64)
    expect_no_backward_error(result, "lm_loss")
    leaf = logits.clone().requires_grad_(True)
    reference_loss(leaf, tokens).backward()
    got = result.input_grads[0]
    expect_close(got, leaf.grad, "d lm_loss / d logits", **tolerance(torch.float64),
                 hint=guess("Is part of the computation detached, or done outside torch (numpy, .item())?"))
    last = values(got, "d lm_loss / d logits")[:, -1]
    if last.abs().max() != 0:
        fail("the logits at the last position get a gradient", "The last position has no next token to predict: drop it with logits[:, :-1]")


@hidden("lm_loss", points=1, group="hygiene")
def test_loss_leaves_inputs_unchanged(ctx):
    """leaves logits and tokens unmodified"""
    logits, tokens = ctx.randn(2, 5, 7), randint(ctx, 7, 2, 5)
    result = ctx.call_full("lm_loss", logits, tokens)
    expect_tensor(result.value, "lm_loss", shape=())
    expect_unchanged(logits, result.args_after[0], "the logits")
    expect_unchanged(tokens, result.args_after[1], "the tokens")


# --- train_step (on the given BigramLM) ---------------------------------------------------

def build_bigram(ctx, vocab_size: int, max_len: int = 16, dtype=torch.float64, table: torch.Tensor | None = None):
    model = ctx.construct("BigramLM", vocab_size, max_len)
    table = ctx.randn(vocab_size, vocab_size) if table is None else table
    model.set_mode(train=False, dtype=dtype)
    try:
        load_weights(model, {"table.weight": table.to(dtype)})
    except StudentRaised as exc:
        raise CheckFailed(f"the given BigramLM was changed, so the grader cannot load its weights ({exc}); "
                          "restore the given cell") from None
    return model, table.to(torch.float64)


def table_of(model) -> torch.Tensor:
    """The model's table as it is now (an nn.Parameter, read as plain values)."""
    value = model.parameters.get("table.weight")
    if not isinstance(value, WireTensor) or value.tensor is None:
        fail("the given BigramLM has no readable parameter table.weight: restore the given cell")
    return value.tensor


def reference_loss_and_grad(table: torch.Tensor, tokens: torch.Tensor) -> tuple[float, torch.Tensor]:
    """The reference loss of a BigramLM with this table on ``tokens``, and its gradient w.r.t. the table (float64)."""
    leaf = table.detach().to(torch.float64).clone().requires_grad_(True)
    loss = reference_loss(leaf[tokens], tokens)
    loss.backward()
    return loss.item(), leaf.grad


class StudentsLoss:
    """The student's ``lm_loss`` as the judge of ``train_step``, run by ``judge_ctx`` (a worker of its own).

    Only an ``lm_loss`` that differs from the reference on the random ``probe`` (a bug its own tests cost points
    for) and has a usable gradient becomes the judge; otherwise ``train_step`` is judged by the reference.
    """

    name = "the loss your lm_loss computes"

    def __init__(self, judge_ctx, probe: tuple[torch.Tensor, torch.Tensor]):
        self.ctx = judge_ctx
        self.probe = probe

    def differs_from_the_reference(self) -> bool:
        logits, tokens = self.probe
        try:
            value, _ = self._call(logits, tokens)
        except CheckFailed:  # not implemented, broken or unusable: the reference judges
            return False
        return abs(value - reference_loss(logits, tokens).item()) > 1e-9

    def loss_and_grad(self, table: torch.Tensor, tokens: torch.Tensor) -> tuple[float, torch.Tensor]:
        V = table.shape[0]
        value, d_logits = self._call(table.to(torch.float64)[tokens], tokens)  # (B, T) -> (B, T, V) logits
        return value, torch.zeros_like(table).index_add_(0, tokens.reshape(-1), d_logits.reshape(-1, V))

    def _call(self, logits, tokens) -> tuple[float, torch.Tensor]:
        one = torch.tensor(1.0, dtype=torch.float64)
        result = self.ctx.call_full("lm_loss", logits, tokens, grad={"wrt": [0], "grad_outputs": [one]})
        value, grads = result.value, result.input_grads
        grad = grads[0] if grads else None
        if not (isinstance(value, WireTensor) and value.tensor is not None and value.tensor.numel() == 1):
            raise CheckFailed("lm_loss gave no single number")
        if not (isinstance(grad, WireTensor) and grad.tensor is not None and grad.tensor.shape == logits.shape
                and torch.isfinite(grad.tensor).all() and grad.tensor.abs().max() > 0):
            raise CheckFailed("lm_loss gave no usable gradient")
        return value.tensor.item(), grad.tensor.to(torch.float64)


def judged(ctx, vocab_size: int, check) -> None:
    """Run ``check(loss_and_grad, name)`` with the reference loss; if that fails and the student's lm_loss is wrong
    (probed in a worker of its own), run it again with that lm_loss: a bug in lm_loss costs points in lm_loss only.
    Otherwise the reference's failure stands."""
    try:
        check(reference_loss_and_grad, "the loss")
        return
    except CheckFailed as failure:
        by_reference = failure
    probe = ctx.randn(2, 5, vocab_size), randint(ctx, vocab_size, 2, 5)
    with ctx.worker_of_its_own("lm_loss") as judge_ctx:
        students = StudentsLoss(judge_ctx, probe)
        if not students.differs_from_the_reference():
            raise by_reference
        try:
            check(students.loss_and_grad, students.name)
        except (StudentRaised, WorkerLost):  # the judge itself broke down: the reference's verdict stands
            raise by_reference from None


def expect_float(value, what: str) -> float:
    if isinstance(value, WireTensor):
        fail(f"{what} returned a tensor of shape {tuple(value.shape)}, expected a Python float",
             "Return loss.item(): a float, which holds neither the graph nor the batch in memory")
    if isinstance(value, bool) or not isinstance(value, (float, int)):
        fail(f"{what} returned {_kind(value)}, expected a Python float (loss.item())")
    if not math.isfinite(value):
        fail(f"{what} returned {value}, expected a finite loss")
    return float(value)


LR = 0.5


@hidden("train_step", points=1, group="shapes")
def test_train_step_returns_a_float(ctx):
    """returns the loss as a Python float"""
    model, _ = build_bigram(ctx, 7)
    opt = ctx.builtin("optimizer", model, "SGD", lr=LR)
    expect_float(ctx.call("train_step", model, opt, randint(ctx, 7, 3, 6)), "train_step(model, optimizer, tokens)")


@hidden("train_step", points=2, group="numerics")
def test_train_step_does_one_step(ctx):
    """each call does one SGD step on the gradient of this batch's loss and returns the loss before it"""
    V = 9
    model, table = build_bigram(ctx, V)
    opt = ctx.builtin("optimizer", model, "SGD", lr=LR)
    batches = [randint(ctx, V, 4, 8), randint(ctx, V, 4, 8)]
    steps = []  # (returned loss, parameters after) of each call
    for step, tokens in enumerate(batches, start=1):
        returned = expect_float(ctx.call("train_step", model, opt, tokens), f"train_step call {step}")
        steps.append((returned, table_of(model)))
        if step == 1 and torch.equal(steps[0][1], table):
            fail("train_step did not change the parameters",
                 "Call optimizer.step() after loss.backward(): before it, there is no gradient to step on")
    judged(ctx, V, functools.partial(_expect_sgd_steps, table, batches, steps))


def _expect_sgd_steps(table, batches, steps, loss_and_grad, judge: str) -> None:
    """The SGD steps (and returned losses) ``steps`` recorded, replayed in the grader on the loss ``loss_and_grad``."""
    grads = []
    for step, (tokens, (returned, after)) in enumerate(zip(batches, steps), start=1):
        loss, grad = loss_and_grad(table, tokens)
        grads.append(grad)
        want = table - LR * grad
        suspects = {"a step on the gradients of this batch and the previous one: they accumulate because "
                    "optimizer.zero_grad() is never called": table - LR * (grads[0] + grad)} if step == 2 else {}
        expect_close(wire(after), want, f"the parameters after train_step call {step} (SGD, lr={LR})",
                     **tolerance(torch.float64, 10), suspects=suspects,
                     hint=f"One step: optimizer.zero_grad(); loss = lm_loss(model(tokens), tokens); loss.backward(); optimizer.step(). "
                          f"(Judged with {judge}.)")
        if abs(returned - loss) > 1e-8 * max(1.0, abs(loss)):
            after_loss = loss_and_grad(want, tokens)[0]
            hint = ("That is the loss after the update: return the loss computed before optimizer.step()"
                    if abs(returned - after_loss) <= 1e-8 * max(1.0, abs(after_loss)) else
                    "Return loss.item() of the loss you backpropagated")
            fail(f"train_step call {step} returned {returned:.6g}, expected {judge} before the update, {loss:.6g}",
                 hint)
        table = want


OVERFIT_STEPS = 40
OVERFIT_LOSS = 0.25


@hidden("train_step", points=2, group="properties", time_limit=30)
def test_train_step_overfits_a_batch(ctx):
    """40 AdamW steps on one batch drive its loss from ln(vocab_size) below 0.25"""
    V = 16
    model, table = build_bigram(ctx, V, dtype=torch.float32, table=torch.zeros(V, V))
    successor = ctx.permutation(V)  # each token has exactly one possible next token: a bigram can learn it all
    tokens = torch.empty(8, 16, dtype=torch.int64)
    tokens[:, 0] = randint(ctx, V, 8)
    for t in range(15):
        tokens[:, t + 1] = successor[tokens[:, t]]
    opt = ctx.builtin("optimizer", model, "AdamW", lr=0.1)
    returned = [expect_float(ctx.call("train_step", model, opt, tokens), "train_step") for _ in range(OVERFIT_STEPS)]
    trained = table_of(model).double()
    judged(ctx, V, functools.partial(_expect_overfit, table, trained, tokens, returned))


def _expect_overfit(table, trained, tokens, returned, loss_and_grad, judge: str) -> None:
    first = loss_and_grad(table, tokens)[0]
    if abs(returned[0] - first) > 1e-4:
        fail(f"the first train_step returned {returned[0]:.4g}, but {judge} of the untrained model is {first:.4g}",
             "Return the loss of the batch you trained on, as loss.item()")
    final = loss_and_grad(trained, tokens)[0]
    if not final < OVERFIT_LOSS:
        fail(f"after {OVERFIT_STEPS} train_step calls on one batch, {judge} is {final:.3g} "
             f"(it started at {first:.3g}); "
             f"expected below {OVERFIT_LOSS}",
             "Is optimizer.step() called after loss.backward(), and the gradient zeroed before each backward?")


@hidden("train_step", points=1, group="hygiene")
def test_train_step_leaves_tokens_and_dtype(ctx):
    """leaves the tokens unmodified and the model's dtype unchanged"""
    model, _ = build_bigram(ctx, 6)
    opt = ctx.builtin("optimizer", model, "SGD", lr=LR)
    tokens = randint(ctx, 6, 2, 5)
    result = ctx.call_full("train_step", model, opt, tokens)
    expect_float(result.value, "train_step")
    expect_unchanged(tokens, result.args_after[2], "the tokens")
    if table_of(model).dtype != torch.float64:
        fail(f"train_step turned a float64 model into {table_of(model).dtype}", "train_step must not convert the model (.float(), .to(...))")


# --- generate -----------------------------------------------------------------------------

def greedy_bigram(table, prompt, n, max_len, bug=None):
    seq = prompt.clone()
    for _ in range(n):
        context = seq[:, :max_len] if bug == "first_max_len" else seq[:, -max_len:]
        last = context[:, 0] if bug == "first_position" else context[:, -1]
        seq = torch.cat([seq, table[last].argmax(-1, keepdim=True)], dim=1)
    return seq


def worker_generator(ctx, seed: int):
    """A seeded generator in the worker, on the student's device (torch.multinomial wants it next to the probabilities)."""
    return ctx.builtin("generator", seed, device=ctx.session.device)


def sample_bigram(table, prompt, n, temperature, top_k, seed, style="mask", device="cpu"):
    """What generate must return: softmax(logits / T) over the top_k logits, one torch.multinomial draw per step.

    Drawn on ``device``, the worker's: CUDA and CPU generators seeded alike give different tokens (and a CUDA
    stream depends on the GPU), so the replay runs where the student's draw ran; the tokens come back to the CPU.
    """
    g = torch.Generator(device=device).manual_seed(seed)
    table, seq = table.to(device), prompt.to(device)
    for _ in range(n):
        logits = table[seq[:, -1]] / temperature  # (B, V)
        if top_k is not None and style == "gather":  # sample among the k values, then map back to token ids
            top, ids = torch.topk(logits, min(top_k, logits.shape[-1]))
            nxt = ids.gather(-1, torch.multinomial(torch.softmax(top, -1), 1, generator=g))
        else:
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=g)
        seq = torch.cat([seq, nxt], dim=1)
    return seq.cpu()


def call_generate(ctx, model, prompt, n, **kwargs):
    what = f"generate(model, prompt of shape {tuple(prompt.shape)}, {n}, {', '.join(f'{k}={v}' for k, v in kwargs.items() if k != 'generator')})"
    result = ctx.call_full("generate", model, prompt, n, **kwargs)
    return result, expect_tensor(result.value, what, shape=(prompt.shape[0], prompt.shape[1] + n), dtype=torch.int64,
                                 hint="Return the prompt followed by the new tokens: torch.cat([tokens, next_token], dim=1), int64 ids")


@hidden("generate", points=1, group="shapes")
def test_generate_shape_and_prompt(ctx):
    """returns (B, T0 + max_new_tokens) int64 ids that begin with the prompt"""
    model, _ = build_bigram(ctx, 9, max_len=8)
    prompt = randint(ctx, 9, 3, 4)
    _, out = call_generate(ctx, model, prompt, 5, temperature=0)
    expect_equal(wire(out[:, :4]), prompt, "the first T0 tokens of generate's output",
                 hint="The output begins with the prompt itself")
    _, out = call_generate(ctx, model, prompt, 0, temperature=0)
    expect_equal(wire(out), prompt, "generate(model, prompt, 0)", hint="With max_new_tokens=0, return the prompt")


@hidden("generate", points=2, group="numerics")
def test_generate_greedy(ctx):
    """temperature=0 picks the argmax at every step, whatever generator is passed"""
    model, table = build_bigram(ctx, 12, max_len=16)
    prompt = randint(ctx, 12, 3, 5)
    want = greedy_bigram(table, prompt, 10, 16)
    _, out = call_generate(ctx, model, prompt, 10, temperature=0.0)
    expect_close(wire(out), want, "greedy generation (temperature=0)", atol=0, rtol=0,
                 suspects={"greedy decoding from the logits of the first position (logits[:, 0]), not the last":
                           greedy_bigram(table, prompt, 10, 16, bug="first_position")},
                 hint="With temperature == 0 append logits[:, -1].argmax(-1) at every step: no sampling")
    _, again = call_generate(ctx, model, prompt, 10, temperature=0.0, generator=worker_generator(ctx, ctx.randint(0, 2**31)))
    expect_equal(wire(again), want, "greedy generation with a generator passed",
                 hint="Greedy decoding is deterministic: it must not sample, with or without a generator")


@hidden("generate", points=2, group="numerics")
def test_generate_samples_with_the_generator(ctx):
    """samples softmax(logits / temperature) restricted to the top_k logits with torch.multinomial(generator=...)"""
    V = 10
    model, table = build_bigram(ctx, V, max_len=16)
    prompt = randint(ctx, V, 4, 3)
    n = 15
    seed = ctx.randint(0, 2**31)
    _, first = call_generate(ctx, model, prompt, n, temperature=1.0, generator=worker_generator(ctx, seed))
    _, second = call_generate(ctx, model, prompt, n, temperature=1.0, generator=worker_generator(ctx, seed))
    if not torch.equal(first, second):
        fail("two calls with generators seeded alike sampled different tokens",
             "Draw with torch.multinomial(probs, num_samples=1, generator=generator): the global random state is not the generator")
    replay = functools.partial(sample_bigram, table, prompt, n, device=ctx.session.device)
    for temperature, top_k in [(0.7, None), (1.3, 3), (1.0, 1), (0.9, V + 2)]:
        seed = ctx.randint(0, 2**31)
        _, out = call_generate(ctx, model, prompt, n, temperature=temperature, top_k=top_k, generator=worker_generator(ctx, seed))
        accepted = [replay(temperature, top_k, seed)]
        if top_k is not None:
            accepted.append(replay(temperature, top_k, seed, style="gather"))
        if any(torch.equal(out, want) for want in accepted):
            continue
        suspects = {
            "sampling at temperature 1: is the temperature ignored, or applied after the softmax (probs / temperature)?":
                replay(1.0, top_k, seed),
            "logits multiplied by the temperature instead of divided by it": replay(1 / temperature, top_k, seed),
        }
        if top_k is not None and top_k < V:
            suspects.update({
                "top_k ignored: sampling from the whole vocabulary": replay(temperature, None, seed),
                f"the top {top_k + 1} logits kept instead of the top {top_k}": replay(temperature, top_k + 1, seed),
            })
            if top_k > 1:
                suspects[f"the top {top_k - 1} logits kept instead of the top {top_k}"] = replay(temperature, top_k - 1, seed)
        expect_close(wire(out), accepted[0], f"tokens sampled with temperature={temperature}, top_k={top_k}", atol=0, rtol=0,
                     suspects=suspects,
                     hint="probs = softmax(logits[:, -1] / temperature) with all but the top_k logits set to -inf, then "
                          "torch.multinomial(probs, num_samples=1, generator=generator) once per step")


@hidden("generate", points=2, group="properties")
def test_generate_crops_to_max_len(ctx):
    """never feeds the model more than max_len positions, and feeds it the last max_len tokens"""
    V, max_len = 9, 5
    # A table whose greedy walk is one cycle through all V tokens: the last token always changes, so a context
    # cropped to the first max_len tokens (whose last token stops changing) gives other tokens, whatever the seed.
    model, table = build_bigram(ctx, V, max_len=max_len, table=cycle_table(ctx, V))
    ctx.builtin("record_lengths", model)
    prompt = randint(ctx, V, 2, 3)
    _, out = call_generate(ctx, model, prompt, 8, temperature=0)
    lengths = ctx.builtin("recorded_lengths", model)
    if not lengths:
        fail("generate never called the model", "Call model(context) once per new token (not model.forward(context))")
    if max(lengths) > max_len:
        fail(f"generate fed the model {max(lengths)} positions, more than its max_len={max_len}",
             "Crop before every call: context = tokens[:, -model.max_len:]")
    expect_close(wire(out), greedy_bigram(table, prompt, 8, max_len), "greedy generation past max_len", atol=0, rtol=0,
                 suspects={"the context cropped to the first max_len tokens instead of the last":
                           greedy_bigram(table, prompt, 8, max_len, bug="first_max_len")},
                 hint="context = tokens[:, -model.max_len:], the most recent tokens")
    # The same with a model whose prediction depends on the whole context: the student's TransformerLM, judged
    # by the reference GPT with its weights. If the model does not compute that GPT (asked in a worker of its
    # own, where generate never ran), its own tests say so and this part is skipped.
    cfg = Config(vocab_size=V, d_model=16, n_heads=2, n_layers=2, max_len=max_len)
    try:
        lm, state = build_lm(ctx, cfg)
    except CheckFailed:
        return
    prompt, references = _prompt_telling_crops_apart(ctx, state, cfg, V, max_len)
    if not _computes_the_reference(ctx, cfg, state, prompt):
        return
    try:
        _, out = call_generate(ctx, lm, prompt, 8, temperature=0)
    except StudentRaised as exc:  # generate read max_len from the BigramLM above; the TransformerLM must store it
        if "has no attribute 'max_len'" in (exc.error.get("message") or ""):
            return
        raise
    expect_close(wire(out), references[max_len], f"greedy generation with {cfg.call()} past max_len", atol=0, rtol=0,
                 suspects={"a context of the last max_len - 1 tokens, one fewer than the model can see": references[max_len - 1],
                           "only the last token fed to the model: no context at all": references[1]},
                 hint="context = tokens[:, -model.max_len:]; logits = model(context)[:, -1]")


def cycle_table(ctx, vocab_size: int) -> torch.Tensor:
    """Bigram logits whose argmax walks one cycle through every token (small noise elsewhere)."""
    order = ctx.permutation(vocab_size)
    table = ctx.randn(vocab_size, vocab_size, scale=0.1)
    table[order, order.roll(-1)] += 5.0  # token order[i] is followed by order[i + 1]
    return table


def _prompt_telling_crops_apart(ctx, state, cfg: Config, vocab_size: int, max_len: int, tries: int = 16):
    """A prompt whose greedy continuations differ for contexts of max_len, max_len - 1 and 1 tokens, so each
    wrong crop is caught and named (drawn again, up to ``tries`` times, when two of them agree by chance)."""
    for _ in range(tries):
        prompt = randint(ctx, vocab_size, 2, 3)
        references = {crop: _greedy_reference(state, cfg, prompt, 8, crop) for crop in (max_len, max_len - 1, 1)}
        outs = list(references.values())
        if all(not torch.equal(a, b) for i, a in enumerate(outs) for b in outs[i + 1:]):
            break
    return prompt, references


def _computes_the_reference(ctx, cfg: Config, state, tokens) -> bool:
    """Whether the student's TransformerLM with these weights gives the reference logits, asked in a worker of its
    own: in generate's worker, code that generate ran could have changed the model."""
    with ctx.worker_of_its_own("TransformerLM") as judge_ctx:
        try:
            model, _ = build_lm(judge_ctx, cfg, state=state)
            logits = values(judge_ctx.forward(model, tokens).value, "TransformerLM logits",
                            shape=(*tokens.shape, cfg.vocab_size))
        except CheckFailed:
            return False
    return torch.allclose(logits, oracle_logits(state, tokens, cfg), **LOGITS_TOL)


def _greedy_reference(state, cfg: Config, prompt, n, crop):
    """Greedy decoding by the reference GPT, fed the last ``crop`` tokens at each step."""
    seq = prompt.clone()
    for _ in range(n):
        logits = oracle_logits(state, seq[:, -crop:], cfg)
        seq = torch.cat([seq, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return seq


@hidden("generate", points=1, group="hygiene")
def test_generate_leaves_prompt_and_model(ctx):
    """leaves the prompt and the model's parameters unmodified"""
    model, table = build_bigram(ctx, 8, max_len=6)
    prompt = randint(ctx, 8, 2, 4)
    result, _ = call_generate(ctx, model, prompt, 6, temperature=0.8, top_k=4, generator=worker_generator(ctx, 7))
    expect_unchanged(prompt, result.args_after[1], "the prompt")
    expect_equal(wire(table_of(model)), table, "the model's parameters after generate",
                 hint="Generation only reads the model: no optimizer steps, no in-place changes")
