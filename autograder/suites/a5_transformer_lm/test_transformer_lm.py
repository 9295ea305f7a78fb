"""TransformerLM: a decoder-only Transformer language model, GPT-style.

Radford et al., "Improving Language Understanding by Generative Pre-Training" (2018) and "Language Models are
Unsupervised Multitask Learners" (2019, GPT-2: learned positions, Pre-LN blocks, a final LayerNorm, N(0, 0.02**2)
initialisation); Vaswani et al., "Attention Is All You Need" (2017: sinusoidal positions, Post-LN blocks); Press &
Wolf, "Using the Output Embedding to Improve Language Models" (2017: tied embeddings).

Logits are compared in float64 with ``reference.transformer_lm`` given the very weights loaded into the student's
model; a mismatch that equals a known-wrong model (``autograder/known_bugs/a5_transformer_lm.py``) is named.
"""

from __future__ import annotations

import math

import torch

from autograder import autodiff, reference
from autograder.checks import expect_close, expect_no_backward_error, expect_tensor, expect_unchanged, fail, guess
from autograder.hidden import hidden
from autograder.known_bugs.a5_transformer_lm import lm_suspects, sinusoid_suspects
from autograder.suites.a5_transformer_lm.inputs import (
    GRADIENT_TOL,
    LOGITS_TOL,
    SELF_TOL,
    SINUSOID_TOL,
    Config,
    build_lm,
    check_structure,
    randint,
    wire,
)
from autograder.suites.common import FLOATS, dtype_name, expect_deterministic
from autograder.wire import WireTensor


def suspects(state, tokens, cfg: Config) -> dict:
    return lm_suspects(state, tokens, n_heads=cfg.n_heads, norm_first=cfg.norm_first)


@hidden("TransformerLM", points=1, group="shapes")
def test_lm_structure(ctx):
    """has tok_emb, pos_emb, blocks (n_layers TransformerBlocks), norm_f and a bias-free lm_head, with the right shapes"""  # noqa: E501
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
        expect_close(got, cfg.reference(state, tokens), what, **LOGITS_TOL, suspects=suspects(state, tokens, cfg),
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
    want = reference.sinusoidal_positions(cfg.max_len, cfg.d_model)
    expect_close(buffer, want, "the pos_emb buffer", **SINUSOID_TOL,
                 suspects=sinusoid_suspects(cfg.max_len, cfg.d_model),
                 hint="pos_emb = sinusoidal_positions(max_len, d_model): one row per position 0 .. max_len-1")
    model, state = build_lm(ctx, cfg)
    # The reference adds the judged model's own sinusoids (now float64), so they are checked on that model too:
    # not only on the first one built.
    judged = model.describe()["buffers"].get("pos_emb")
    expect_close(judged, want, "the pos_emb buffer of a second model", **SINUSOID_TOL,
                 hint="Every TransformerLM(..., positions=\"sinusoidal\") holds sinusoidal_positions(max_len, d_model)")
    with_table = {**state, "pos_emb": judged.tensor}  # reference.lm_positions reads the model's own buffer
    tokens = randint(ctx, cfg.vocab_size, 2, 9)
    expect_close(ctx.forward(model, tokens).value, cfg.reference(with_table, tokens), f"{cfg.call()} logits",
                 **LOGITS_TOL, suspects=suspects(with_table, tokens, cfg),
                 hint="Add pos_emb[:T] (the first T rows of the buffer) to the token embeddings")


@hidden("TransformerLM", points=2, group="properties")
def test_lm_is_causal(ctx):
    """changing tokens after position t leaves the logits at positions 0..t unchanged"""
    cfg = Config(vocab_size=11, d_model=16, n_heads=2, n_layers=2, max_len=12)
    model, _ = build_lm(ctx, cfg)
    tokens = randint(ctx, cfg.vocab_size, 2, 12)
    base = expect_tensor(ctx.forward(model, tokens).value, f"{cfg.call()} logits", shape=(2, 12, 11))
    for t in (0, 4, 10):
        changed = tokens.clone()
        changed[:, t + 1:] = (tokens[:, t + 1:] + 1 + randint(ctx, cfg.vocab_size - 1, 2, 11 - t)) % cfg.vocab_size
        out = expect_tensor(ctx.forward(model, changed).value, f"{cfg.call()} logits", shape=(2, 12, 11))
        expect_close(wire(out[:, :t + 1]), base[:, :t + 1],
                     f"logits at positions 0..{t} after changing only the tokens at positions {t + 1}..11",
                     **SELF_TOL,
                     hint="Position t must not see later tokens: pass causal_mask(T) (True on and below the diagonal) "
                          "to every block")


@hidden("TransformerLM", points=1, group="properties")
def test_lm_masks_padding(ctx):
    """with lengths, real tokens are unaffected and padded keys are hidden (the causal AND the padding mask)"""
    cfg = Config(vocab_size=11, d_model=16, n_heads=2, n_layers=2, max_len=10)
    model, _ = build_lm(ctx, cfg)
    tokens, lengths = randint(ctx, cfg.vocab_size, 3, 8), torch.tensor([8, 3, 5])
    plain = expect_tensor(ctx.forward(model, tokens).value, f"{cfg.call()} logits", shape=(3, 8, 11))
    what = f"{cfg.call()} logits with lengths={lengths.tolist()}"
    padded = expect_tensor(ctx.forward(model, tokens, lengths=lengths).value, what, shape=(3, 8, 11))
    for b, n in enumerate(lengths.tolist()):
        expect_close(wire(padded[b, :n]), plain[b, :n], f"logits of the {n} real tokens of row {b} with lengths given",
                     **SELF_TOL,
                     hint="A real token's logits changed when lengths was given. Padding follows the real tokens, so "
                          "combine the masks, mask = causal_mask(T) & padding_mask(lengths, T): do not replace the "
                          "causal mask")
    # A padded position sees the real tokens and its own token only: the other padded tokens must not matter.
    changed = tokens.clone()
    for b, n in enumerate(lengths.tolist()):
        changed[b, n:] = (tokens[b, n:] + 1 + randint(ctx, cfg.vocab_size - 1, 8 - n)) % cfg.vocab_size
        changed[b, -1] = tokens[b, -1]
    out = expect_tensor(ctx.forward(model, changed, lengths=lengths).value, what, shape=(3, 8, 11))
    expect_close(wire(out[1:, -1]), padded[1:, -1],
                 "logits at the last (padded) position after changing only the other padded tokens",
                 **SELF_TOL,
                 hint="lengths is ignored: padded keys must be hidden, "
                      "mask = causal_mask(T) & padding_mask(lengths, T)")


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
            logits = expect_tensor(ctx.forward(model, tokens).value, f"{cfg.call()} logits", shape=(8, 32, V))
            excess.append(reference.lm_loss(logits, tokens).item() - math.log(V))
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
    # Without lm_head.weight the reference's head is tok_emb.weight: one leaf, whose gradient sums both uses.
    leaves = {k: v.clone().requires_grad_(True) for k, v in state.items() if k != "lm_head.weight"}
    want = cfg.reference(leaves, tokens)
    expect_close(result.value, want.detach(), f"{cfg.call()} logits", **LOGITS_TOL,
                 suspects=suspects(state, tokens, cfg))
    autodiff.backward(want, g)
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
    expect_tensor(result.value, f"{cfg.call()} logits", shape=(2, 9, 11))
    expect_no_backward_error(result, "TransformerLM")
    leaves = {k: v.clone().requires_grad_(True) for k, v in state.items()}
    autodiff.backward(cfg.reference(leaves, tokens), g)
    grads = result.param_grads
    for name in cfg.parameter_shapes():
        got = grads.get(name)
        if got is None:
            fail(f"{name} received no gradient",
                 guess(f"Is {name.rpartition('.')[0]} used in forward, on a path that is not detached (no .detach(), "
                       ".data or torch.no_grad())?"))
        expect_close(got, leaves[name].grad, f"gradient of {name}", **GRADIENT_TOL,
                     hint=guess("The logits match only if every part is used exactly as the reference uses it"))


@hidden("TransformerLM", points=1, group="hygiene")
def test_lm_keeps_dtype_and_inputs(ctx):
    """keeps the model's dtype, leaves tokens unmodified, is deterministic in eval()"""
    cfg = Config(vocab_size=9, d_model=8, n_heads=2, n_layers=1, max_len=6)
    for dtype in FLOATS:
        model, _ = build_lm(ctx, cfg, dtype=dtype)
        tokens = randint(ctx, 9, 2, 5)
        first = ctx.forward(model, tokens)
        expect_tensor(first.value, f"logits of a {dtype_name(dtype)} model", dtype=dtype, device=ctx.session.device,
                      hint="Positions and masks must not change the dtype: no .float(), no tensors created with a "
                           "fixed dtype")
        expect_unchanged(tokens, first.args_after[0], "the tokens")
        expect_deterministic(ctx.forward(model, tokens), first, "forward on the same tokens")
