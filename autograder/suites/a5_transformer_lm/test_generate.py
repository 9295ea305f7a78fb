"""generate: autoregressive decoding, greedy or sampled with a temperature and top-k, in a sliding window of max_len.

Radford et al., "Language Models are Unsupervised Multitask Learners" (2019); Fan, Lewis & Dauphin, "Hierarchical
Neural Story Generation" (2018): top-k sampling.

Most checks use the notebook's given ``BigramLM``, so a bug in ``TransformerLM`` costs no points here; the
expected tokens are replayed in the grader (``sampling.py``: greedy decoding, and ``torch.multinomial`` with a
generator seeded like the one the student's generate gets). The TransformerLM part of the cropping check is judged
with the grader's own ``ContextLM`` (``autograder/worker/builtins_for_grader.py``), whose prediction depends on the
whole context: the student's TransformerLM, which a bug (or a trick) could keep from running, plays no part.
"""

from __future__ import annotations

import functools

import torch

from autograder.checks import expect_close, expect_equal, expect_tensor, expect_unchanged, fail
from autograder.hidden import hidden
from autograder.known_bugs.a5_transformer_lm import greedy_suspects, sampling_suspects
from autograder.suites.a5_transformer_lm.inputs import (
    build_bigram,
    cycle_table,
    randint,
    table_of,
    wire,
)
from autograder.suites.a5_transformer_lm.sampling import bigram_logits, greedy, sample_bigram, worker_generator
from autograder.worker.builtins_for_grader import ContextLM


def call_generate(ctx, model, prompt, n, **kwargs):
    options = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k != "generator")
    what = f"generate(model, prompt of shape {tuple(prompt.shape)}, {n}, {options})"
    result = ctx.call_full("generate", model, prompt, n, **kwargs)
    return result, expect_tensor(result.value, what, shape=(prompt.shape[0], prompt.shape[1] + n), dtype=torch.int64,
                                 hint="Return the prompt followed by the new tokens: torch.cat([tokens, next_token], "
                                      "dim=1), int64 ids")


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
    want = greedy(bigram_logits(table), prompt, 10, 16)
    _, out = call_generate(ctx, model, prompt, 10, temperature=0.0)
    expect_close(wire(out), want, "greedy generation (temperature=0)", atol=0, rtol=0,
                 suspects=greedy_suspects(bigram_logits(table), prompt, 10, 16),
                 hint="With temperature == 0 append logits[:, -1].argmax(-1) at every step: no sampling")
    generator = worker_generator(ctx, ctx.randint(0, 2**31))
    _, again = call_generate(ctx, model, prompt, 10, temperature=0.0, generator=generator)
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
             "Draw with torch.multinomial(probs, num_samples=1, generator=generator): the global random state is "
             "not the generator")
    replay = functools.partial(sample_bigram, table, prompt, n, device=ctx.session.device)
    for temperature, top_k in [(0.7, None), (1.3, 3), (1.0, 1), (0.9, V + 2)]:
        seed = ctx.randint(0, 2**31)
        _, out = call_generate(ctx, model, prompt, n, temperature=temperature, top_k=top_k,
                               generator=worker_generator(ctx, seed))
        accepted = [replay(temperature, top_k, seed)]
        if top_k is not None:
            accepted.append(replay(temperature, top_k, seed, style="gather"))
        if any(torch.equal(out, want) for want in accepted):
            continue
        suspects = sampling_suspects(functools.partial(replay, seed=seed), temperature, top_k, V)
        expect_close(wire(out), accepted[0], f"tokens sampled with temperature={temperature}, top_k={top_k}",
                     atol=0, rtol=0, suspects=suspects,
                     hint="probs = softmax(logits[:, -1] / temperature) with all but the top_k logits set to -inf, "
                          "then torch.multinomial(probs, num_samples=1, generator=generator) once per step")


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
    expect_close(wire(out), greedy(bigram_logits(table), prompt, 8, max_len), "greedy generation past max_len",
                 atol=0, rtol=0, suspects=greedy_suspects(bigram_logits(table), prompt, 8, max_len),
                 hint="context = tokens[:, -model.max_len:], the most recent tokens")
    # The same with a model whose prediction depends on the whole context: the grader's own ContextLM (built in
    # the worker, replayed here), so no bug of the student's TransformerLM can skip this part.
    lm = ctx.builtin("context_lm", V, max_len, device=ctx.session.device)
    logits_of = ContextLM(V, max_len).double()
    prompt = _prompt_telling_crops_apart(ctx, logits_of, V, max_len)
    _, out = call_generate(ctx, lm, prompt, 8, temperature=0)
    expect_close(wire(out), greedy(logits_of, prompt, 8, max_len),
                 "greedy generation past max_len with a model that reads its whole context", atol=0, rtol=0,
                 suspects=greedy_suspects(logits_of, prompt, 8, max_len),
                 hint="context = tokens[:, -model.max_len:]; logits = model(context)[:, -1]")


def _prompt_telling_crops_apart(ctx, logits_of, vocab_size: int, max_len: int, tries: int = 16) -> torch.Tensor:
    """A prompt whose greedy continuations differ for contexts of max_len, max_len - 1 and 1 tokens and the first
    max_len, so each wrong crop is caught and named (drawn again, up to ``tries`` times, when two agree by chance)."""
    crops = [lambda s: s[:, -max_len:], lambda s: s[:, -(max_len - 1):], lambda s: s[:, -1:], lambda s: s[:, :max_len]]
    for _ in range(tries):
        prompt = randint(ctx, vocab_size, 2, 3)
        outs = [_greedy_with(logits_of, prompt, 8, crop) for crop in crops]
        if all(not torch.equal(a, b) for i, a in enumerate(outs) for b in outs[i + 1:]):
            break
    return prompt


def _greedy_with(logits_of, prompt: torch.Tensor, n: int, crop) -> torch.Tensor:
    seq = prompt.clone()
    for _ in range(n):
        seq = torch.cat([seq, logits_of(crop(seq))[:, -1].argmax(-1, keepdim=True)], dim=1)
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
