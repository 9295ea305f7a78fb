"""forward_cached and generate_cached: a KV cache for the softmax attention of the given TransformerLM.

forward_cached(model, tokens, cache) runs new tokens at positions T_past .. T_past + T_new - 1, appends their keys
and values to each block's cache and attends with the bottom-right aligned causal_mask(T_new, T_past + T_new):
its logits are the last T_new rows of model(all tokens). Expected: ``reference.transformer_lm`` on the whole
sequence, and ``reference.lm_keys_values`` for the cache. The cache handed to the student is always the
reference's, so a bug in one step does not carry into the next. generate_cached is judged against greedy
decoding replayed on the reference model (the whole sequence at every step) and must not build T x T tensors:
the largest tensor it creates is measured in the worker (``inputs.call_measured``), and a forward pre-hook of
the grader's (``record_lengths``) sees any call of the model itself.
"""

from __future__ import annotations

import torch

from autograder.checks import expect_close, expect_equal, expect_tensor, expect_unchanged, fail
from autograder.hidden import hidden
from autograder.known_bugs.a7_fast_weights import cache_suspects, cached_greedy, greedy_suspects
from autograder.suites.a7_fast_weights.inputs import (
    LM,
    LM_TOL,
    call_measured,
    expect_linear_work,
    expect_small,
    expect_two,
    plain,
    wire,
)

HINT = ("Positions T_past .. T_past + T_new - 1; append the new keys and values to the cache, then attend with "
        "causal_mask(T_new, T_past + T_new)")


def tokens_of(ctx, lm: LM, B: int, T: int) -> torch.Tensor:
    return torch.randint(0, lm.vocab_size, (B, T), generator=ctx.generator)


def call_cached(ctx, model, tokens, cache, what: str, lm: LM, T_total: int):
    """forward_cached's (logits, cache), checked for shapes."""
    result = ctx.call_full("forward_cached", model, tokens, cache)
    logits, new_cache = expect_two(result.value, what, "(logits, cache)")
    B, T_new = tokens.shape
    expect_tensor(logits, f"the logits of {what}", shape=(B, T_new, lm.vocab_size),
                  hint="Logits for the new tokens only: (B, T_new, vocab_size)")
    if not isinstance(new_cache, (list, tuple)) or len(new_cache) != lm.n_layers:
        fail(f"{what} returned a cache of {type(new_cache).__name__}"
             f"{' of length ' + str(len(new_cache)) if isinstance(new_cache, (list, tuple)) else ''}, "
             f"expected a list of one (k, v) pair per block ({lm.n_layers} blocks)")
    d_head = lm.d_model // lm.n_heads
    for i, pair in enumerate(new_cache):
        k, v = expect_two(pair, f"cache[{i}] of {what}", "(k, v)")
        for name, t in (("k", k), ("v", v)):
            expect_tensor(t, f"cache[{i}] {name} of {what}", shape=(B, lm.n_heads, T_total, d_head),
                          hint="Each block keeps its keys and values as (B, n_heads, T_past + T_new, d_head)")
    return result, logits, new_cache


@hidden("forward_cached", points=1, group="shapes")
def test_cache_shapes(ctx):
    """returns logits (B, T_new, vocab_size) and a list of one (k, v) pair per block, (B, n_heads, T, d_head) each"""
    lm = LM(n_layers=3)
    model, state = lm.build(ctx)
    tokens = tokens_of(ctx, lm, 2, 7)
    call_cached(ctx, model, tokens[:, :4], None, "forward_cached(model, 4 tokens)", lm, 4)
    call_cached(ctx, model, tokens[:, 4:], lm.cache(state, tokens[:, :4]),
                "forward_cached(model, 3 tokens, a cache of 4)", lm, 7)


@hidden("forward_cached", points=3, group="numerics")
def test_cache_prefill_and_steps_match_the_model(ctx):
    """a prompt, then one token at a time: logits equal model(all tokens)'s last rows, the cache its keys and values"""
    lm = LM()
    model, state = lm.build(ctx)
    tokens = tokens_of(ctx, lm, 3, 9)
    want = lm.logits(state, tokens)  # (B, 9, V)
    _, logits, cache = call_cached(ctx, model, tokens[:, :5], None, "forward_cached on a 5-token prompt", lm, 5)
    expect_close(logits, want[:, :5], "the logits of a 5-token prompt read with no cache", **LM_TOL,
                 suspects=cache_suspects(state, tokens[:, :5], None, n_heads=lm.n_heads), hint=HINT)
    for i, (k, v) in enumerate(lm.cache(state, tokens[:, :5])):
        expect_close(cache[i][0], k, f"the keys cached by block {i}", **LM_TOL,
                     hint="Cache k = split_heads(attn.k_proj(norm1(x)), n_heads) of every block")
        expect_close(cache[i][1], v, f"the values cached by block {i}", **LM_TOL)
    for t in range(5, 9):
        past = lm.cache(state, tokens[:, :t])
        _, logits, _ = call_cached(ctx, model, tokens[:, t:t + 1], past, f"forward_cached on token {t}", lm, t + 1)
        expect_close(logits, want[:, t:t + 1], f"the logits of token {t} after a cache of {t}", **LM_TOL,
                     suspects=cache_suspects(state, tokens[:, t:t + 1], past, n_heads=lm.n_heads), hint=HINT)


@hidden("forward_cached", points=1, group="numerics")
def test_cache_chunk_uses_bottom_right_mask(ctx):
    """a chunk of new tokens after a cache: the mask is causal_mask(T_new, T_past + T_new), bottom-right aligned"""
    lm = LM()
    model, state = lm.build(ctx)
    tokens = tokens_of(ctx, lm, 2, 10)
    past = lm.cache(state, tokens[:, :6])
    _, logits, _ = call_cached(ctx, model, tokens[:, 6:], past, "forward_cached on 4 tokens after 6", lm, 10)
    expect_close(logits, lm.logits(state, tokens)[:, 6:], "the logits of 4 new tokens after a cache of 6", **LM_TOL,
                 suspects=cache_suspects(state, tokens[:, 6:], past, n_heads=lm.n_heads),
                 hint="New token i sees all cached keys and new keys 0..i: causal_mask(T_new, T_past + T_new)")


@hidden("forward_cached", points=1, group="numerics")
def test_cache_matches_in_float32(ctx):
    """a float32 model: the logits of a cached step match the float64 reference within float32 tolerance"""
    lm = LM()
    model, state = lm.build(ctx, dtype=torch.float32)
    tokens = tokens_of(ctx, lm, 2, 8)
    past = lm.cache(state, tokens[:, :7], dtype=torch.float32)
    _, logits, _ = call_cached(ctx, model, tokens[:, 7:], past, "forward_cached in float32", lm, 8)
    expect_tensor(logits, "float32 logits", dtype=torch.float32)
    expect_close(logits, lm.logits(state, tokens)[:, 7:], "float32 logits of a cached step",
                 atol=1e-4, rtol=1e-3, hint=HINT)  # float32 through two layers of logits of size ~10: 1e-5 relative


@hidden("forward_cached", points=1, group="properties")
def test_cache_step_builds_no_T_by_T_tensor(ctx):
    """one new token after a cache of 200: no tensor larger than twice the cached keys (no T x T mask or scores)"""
    lm = LM(max_len=256)
    model, state = lm.build(ctx)
    tokens = tokens_of(ctx, lm, 1, 201)
    past = lm.cache(state, tokens[:, :200])
    result, stats = call_measured(ctx, "forward_cached", model, tokens[:, 200:], past)
    logits, _ = expect_two(result.value, "forward_cached", "(logits, cache)")
    expect_close(logits, lm.logits(state, tokens)[:, 200:], "the logits of token 200", **LM_TOL, hint=HINT)
    expect_small(stats, 2 * 201 * lm.d_model, "forward_cached of one token after 200", 201 * 201)


@hidden("forward_cached", points=1, group="hygiene")
def test_cache_keeps_dtype_and_inputs(ctx):
    """keeps the model's dtype, leaves the tokens and the cache it is given unmodified, is deterministic"""
    lm = LM()
    for dtype in (torch.float32, torch.float64):
        model, state = lm.build(ctx, dtype=dtype)
        tokens = tokens_of(ctx, lm, 2, 6)
        past = lm.cache(state, tokens[:, :4], dtype=dtype)
        result, logits, _ = call_cached(ctx, model, tokens[:, 4:], past, "forward_cached", lm, 6)
        expect_tensor(logits, f"the logits of a {dtype} model", dtype=dtype)
        expect_unchanged(tokens[:, 4:], result.args_after[1], "the tokens")
        after = result.args_after[2]
        for i, (k, v) in enumerate(past):
            expect_unchanged(k, after[i][0], f"the cached keys of block {i} passed in",
                             "Build a new cache (torch.cat makes new tensors); never write into the one you got")
            expect_unchanged(v, after[i][1], f"the cached values of block {i} passed in")
        again = expect_two(ctx.call("forward_cached", model, tokens[:, 4:], past), "forward_cached", "(logits, cache)")
        expect_equal(again[0], plain(logits), "a second forward_cached on the same input",
                     hint="In eval() mode the output must be deterministic")


# --- generate_cached --------------------------------------------------------------------------------------------

def call_generate(ctx, model, prompt, n):
    result = ctx.call_full("generate_cached", model, prompt, n)
    what = f"generate_cached(model, prompt of shape {tuple(prompt.shape)}, {n})"
    out = expect_tensor(result.value, what, shape=(prompt.shape[0], prompt.shape[1] + n), dtype=torch.int64,
                        hint="Return the prompt followed by the new tokens, int64 ids")
    return result, out


@hidden("generate_cached", points=1, group="shapes")
def test_generate_cached_shape_and_prompt(ctx):
    """returns (B, T0 + max_new_tokens) int64 ids that begin with the prompt; max_new_tokens=0 returns the prompt"""
    lm = LM()
    model, _ = lm.build(ctx)
    prompt = tokens_of(ctx, lm, 3, 4)
    _, out = call_generate(ctx, model, prompt, 5)
    expect_equal(wire(out[:, :4]), prompt, "the first T0 tokens of generate_cached's output",
                 hint="The output begins with the prompt itself")
    _, out = call_generate(ctx, model, prompt, 0)
    expect_equal(wire(out), prompt, "generate_cached(model, prompt, 0)", hint="With max_new_tokens=0 return the prompt")


@hidden("generate_cached", points=3, group="numerics")
def test_generate_cached_equals_uncached_greedy(ctx):
    """gives the tokens of greedy decoding without a cache, token for token"""
    for lm, B, T0, n in [(LM(), 3, 4, 12), (LM(vocab_size=17, d_model=24, n_heads=3, max_len=20), 2, 1, 19)]:
        model, state = lm.build(ctx)
        prompt = tokens_of(ctx, lm, B, T0)
        _, out = call_generate(ctx, model, prompt, n)
        want = lm.greedy(state, prompt, n)
        if not torch.equal(out, want):
            expect_close(wire(out), want, f"greedy tokens after a prompt of {T0} ({n} new)", atol=0, rtol=0,
                         suspects=greedy_suspects(state, prompt, n, n_heads=lm.n_heads),
                         hint="Read the prompt once with forward_cached, then feed only the newest token with the "
                              "cache; append logits[:, -1].argmax(-1)")


@hidden("generate_cached", points=2, group="properties")
def test_generate_cached_builds_no_T_by_T_tensor(ctx):
    """40 new tokens: never calls model(...), no tensor grows like T x T, about twice the ops of 20 tokens"""
    lm = LM(max_len=48)
    model, state = lm.build(ctx)
    ctx.builtin("record_lengths", model)
    prompt = tokens_of(ctx, lm, 1, 2)
    # 20 tokens first: a result remembered from the 40-token call cannot stand in for the work of the shorter one
    _, half = call_measured(ctx, "generate_cached", model, prompt, 20)
    result, stats = call_measured(ctx, "generate_cached", model, prompt, 40)
    out = expect_tensor(result.value, "generate_cached(model, prompt, 40)", shape=(1, 42), dtype=torch.int64)
    lengths = ctx.builtin("recorded_lengths", model)
    if lengths:
        fail(f"generate_cached called model(...) {len(lengths)} time(s), on up to {max(lengths)} tokens",
             "Decode with forward_cached: the prompt once, then only the newest token with the cache")
    # replayed with the reference's own cached decoding (tests/test_reference.py checks it against transformer_lm)
    expect_equal(wire(out), cached_greedy(state, prompt, 40, n_heads=lm.n_heads), "40 greedy tokens",
                 hint="Cached decoding must give the same tokens as decoding without a cache")
    # the cached keys of 2 heads hold 2 * 41 * 8 = 656 elements; the scores of a whole-sequence pass 2 * 40 * 40
    expect_small(stats, 2 * 42 * lm.d_model, "generate_cached of 40 tokens", 2 * 40 * 40)
    # a cache's new storages grow like T^2 (each step's torch.cat), so the work counted is the number of ops:
    # one forward_cached per step, whatever the length, against several for a prefix re-read in chunks
    expect_linear_work(half, stats, "ops", "generate_cached of 20 and 40 tokens",
                       "Keep the cache from step to step: feed only the newest token, once")


@hidden("generate_cached", points=1, group="hygiene")
def test_generate_cached_leaves_prompt_and_model(ctx):
    """leaves the prompt and the model's parameters unmodified"""
    lm = LM()
    model, state = lm.build(ctx)
    prompt = tokens_of(ctx, lm, 2, 3)
    result, _ = call_generate(ctx, model, prompt, 6)
    expect_unchanged(prompt, result.args_after[1], "the prompt")
    params = model.describe()["params"]
    for name, value in state.items():
        expect_equal(wire(plain(params[name])), value, f"the model's {name} after generate_cached",
                     hint="Generation only reads the model")
