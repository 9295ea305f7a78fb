"""Variants of the a7_fast_weights solution: realistic bugs, other correct styles, and cheats.

Every entry replaces exercise cells (by nbgrader grade_id) of ``solutions/a7_fast_weights/fast_weights.ipynb``,
written as the solution cell with one edit (``edit``), so each mutant differs from the reference by its bug
alone. ``tests/test_a7_catalog.py`` grades each variant on the tests of the exercises it changes:

- ``MUTANTS``: a student's plausible bug. The hidden tests in ``fails`` must fail, and the first of them must
  name the bug (its output contains ``says``, case-insensitive).
- ``ALTERNATIVES``: correct code in another style; must get full marks.
- ``CHEATS``: attempts to get credit without doing the work; each carries a ``check(report)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import nbformat

from autograder.runner import GradeReport
from tests.policy_checks import expect_forbidden, expect_needs_review
from tests.variants import Cheat, Variant, expect_failing, failures, solution_path

EXERCISES = ("linear_attention", "recurrent_linear_attention", "delta_rule", "forward_cached", "generate_cached")


@functools.cache
def solution(cell: str) -> str:
    nb = nbformat.read(solution_path("a7_fast_weights"), as_version=4)
    return next(c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == cell)


def edit(cell: str, *replacements: tuple[str, str]) -> dict[str, str]:
    """The solution's ``cell`` with each (old, new) replaced once; ``old`` must occur in it."""
    source = solution(cell)
    for old, new in replacements:
        assert old in source, f"{cell}: {old!r} is not in the solution cell"
        source = source.replace(old, new, 1)
    return {cell: source}


def body(cell: str, new_body: str) -> dict[str, str]:
    """The solution's ``cell`` with the region between the solution markers replaced by ``new_body``."""
    source = solution(cell)
    head, rest = source.split("    ### BEGIN SOLUTION\n")
    _, tail = rest.split("    ### END SOLUTION")
    return {cell: head + new_body + "    ### END SOLUTION" + tail}


LA = ("linear_attention_matches_reference", "linear_attention_eps_after_the_dot_product")

RLA = "recurrent_linear_attention"
LOOP_BY_PARALLEL = """\
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    T = q.shape[-2]
    steps = torch.arange(T, device=q.device)
    sim = (fq @ fk.transpose(-2, -1)) * (steps[:, None] >= steps)  # (..., T, T): keys j <= i
    S0 = q.new_zeros(*q.shape[:-2], q.shape[-1], v.shape[-1]) if state is None else state[0]
    z0 = q.new_zeros(*q.shape[:-2], q.shape[-1]) if state is None else state[1]
    num = sim @ v + fq @ S0
    den = sim.sum(-1, keepdim=True) + (fq * z0.unsqueeze(-2)).sum(-1, keepdim=True) + eps
    return num / den, (S0 + fk.transpose(-2, -1) @ v, z0 + fk.sum(-2))
"""
CUMSUM_STATES = """\
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    S = (fk.unsqueeze(-1) * v.unsqueeze(-2)).cumsum(dim=-3)  # (..., T, d_k, d_v): every step's state
    z = fk.cumsum(dim=-2)
    if state is not None:
        S, z = S + state[0].unsqueeze(-3), z + state[1].unsqueeze(-2)
    out = (fq.unsqueeze(-2) @ S).squeeze(-2) / ((fq * z).sum(-1, keepdim=True) + eps)
    return out, (S[..., -1, :, :], z[..., -1, :])
"""

MASK = "mask = causal_mask(T_new, T_past + T_new, device=tokens.device)"
APPEND = "        if cache is not None:\n            k = torch.cat"
STEP = "logits, cache = forward_cached(model, next_token, cache)"
NORMALISE = "    fq, fk = fq / fq.sum(dim=-1, keepdim=True), fk / fk.sum(dim=-1, keepdim=True)  # sum-normalised\n"
READ = "(fq[..., i, :, None] * S).sum(dim=-2)"
CACHE_NUMERICS = ("cache_prefill_and_steps_match_the_model", "cache_chunk_uses_bottom_right_mask")
READ_CACHE_ONLY = """\
        if cache is not None:  # the past only: the new keys are appended after attention read the cache
            out, _ = scaled_dot_product_attention(q, cache[i][0], cache[i][1])
        else:
            out, _ = scaled_dot_product_attention(q, k_new, v_new, mask)"""
# The recurrence's start: features, the state (zeros or the one given), the loop over the steps.
LOOP_START = """\
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    S = q.new_zeros(*q.shape[:-2], q.shape[-1], v.shape[-1]) if state is None else state[0]
    z = q.new_zeros(*q.shape[:-2], q.shape[-1]) if state is None else state[1]
    outs = []
    for i in range(q.shape[-2]):
"""
READ_BEFORE_WRITE = LOOP_START + """\
        outs.append((fq[..., i, :, None] * S).sum(-2) / ((fq[..., i, :] * z).sum(-1, keepdim=True) + eps))
        S = S + fk[..., i, :, None] * v[..., i, None, :]  # written after the read
        z = z + fk[..., i, :]
    return torch.stack(outs, dim=-2), (S, z)
"""

MUTANTS = [
    # --- linear_attention ---
    Variant("la_no_normaliser", edit("linear_attention", ("return num / den", "return num")),
            fails=list(LA), says="without the normaliser"),
    Variant("la_elu_without_plus_one", edit("linear_attention",
                                            ("F.elu(q) + 1, F.elu(k) + 1", "F.elu(q), F.elu(k)")),
            fails=list(LA), says="without the + 1"),
    Variant("la_not_causal", edit("linear_attention", (".cumsum(dim=-3)", ".sum(dim=-3, keepdim=True)"),
                                  ("fk.cumsum(dim=-2)", "fk.sum(dim=-2, keepdim=True)")),
            fails=["linear_attention_matches_reference", "linear_attention_is_causal"],
            says="a sum over all positions"),
    Variant("la_exclusive_prefix", edit("linear_attention", ("z = fk.cumsum(dim=-2)", "z = fk.cumsum(dim=-2) - fk\n"
                                                             "    S = S - fk.unsqueeze(-1) * v.unsqueeze(-2)")),
            fails=list(LA), says="exclusive prefix"),
    Variant("la_eps_inside", edit("linear_attention", ("(fq * z).sum(dim=-1, keepdim=True) + eps",
                                                       "(fq * (z + eps)).sum(dim=-1, keepdim=True)")),
            fails=["linear_attention_eps_after_the_dot_product"], says="eps added to every component"),
    # --- recurrent_linear_attention ---
    Variant("rec_read_before_write", body(RLA, READ_BEFORE_WRITE),
            fails=["recurrent_matches_linear_attention"], says="exclusive prefix"),
    Variant("rec_ignores_state", edit(RLA, ("    if state is None:\n", "    if True:\n")),
            fails=["recurrent_continues_from_a_state"], says="ignoring the state"),
    Variant("rec_ignores_eps", edit(RLA, ("+ eps  # (..., 1)", "+ 1e-6  # (..., 1): the default, whatever eps is")),
            fails=["recurrent_matches_linear_attention"], says="the eps passed in"),
    Variant("rec_materialises_T_by_T", body(RLA, LOOP_BY_PARALLEL),
            fails=["recurrent_builds_no_T_by_T_tensor"], says="T x T tensor"),
    Variant("rec_keeps_every_state", body(RLA, CUMSUM_STATES),
            fails=["recurrent_builds_no_T_by_T_tensor"], says="a state for every step"),
    # --- delta_rule ---
    Variant("delta_no_subtraction", edit("delta_rule", ("(v[..., i, :] - retrieved)", "v[..., i, :]")),
            fails=["delta_matches_reference"], says="never subtracted"),
    Variant("delta_beta_on_key", edit("delta_rule",
                                      ("retrieved = (key * S)", "retrieved = (beta[..., i, None, None] * key * S)"),
                                      ("S = S + beta[..., i, None, None] * key *", "S = S + key *")),
            fails=["delta_matches_reference"], says="beta applied to the key"),
    Variant("delta_unnormalised", edit("delta_rule", (NORMALISE, "")),
            fails=["delta_matches_reference"], says="not divided by their sum"),
    Variant("delta_read_before_write", edit("delta_rule",
                                            ("        S = S + beta", "        outs.append(READ)\n        S = S + beta"),
                                            (f"        outs.append({READ})  # (..., d_v): S^T phi(q_i)\n", ""),
                                            ("outs.append(READ)", f"outs.append({READ})")),
            fails=["delta_matches_reference"], says="before step i's update"),
    # --- forward_cached ---
    Variant("cache_top_left_mask", edit("forward_cached", (MASK, "mask = torch.ones(T_new, T_past + T_new, "
                                                                 "dtype=torch.bool, device=tokens.device).tril()")),
            fails=list(CACHE_NUMERICS), says="top-left"),
    Variant("cache_read_before_append", edit("forward_cached", (APPEND, "        k_new, v_new = k, v\n" + APPEND),
                                             ("        out, _ = scaled_dot_product_attention(q, k, v, mask)",
                                              READ_CACHE_ONLY)),
            fails=list(CACHE_NUMERICS), says="cached keys only"),
    Variant("cache_positions_from_zero", edit("forward_cached", ("torch.arange(T_past, T_past + T_new,",
                                                                 "torch.arange(0, T_new,")),
            fails=list(CACHE_NUMERICS), says="positions restarting at 0"),
    Variant("cache_full_mask_then_sliced", edit("forward_cached", (MASK, "mask = causal_mask(T_past + T_new, "
                                                                         "device=tokens.device)[-T_new:]")),
            fails=["cache_step_builds_no_T_by_T_tensor"], says="T x T tensor"),
    # --- generate_cached ---
    Variant("gen_recomputes_the_prefix", edit("generate_cached",
                                              (STEP, "logits, cache = forward_cached(model, tokens)")),
            fails=["generate_cached_builds_no_T_by_T_tensor"], says="T x T tensor"),
    Variant("gen_calls_the_model", edit("generate_cached", (STEP, "logits = model(tokens)")),
            fails=["generate_cached_builds_no_T_by_T_tensor"], says="called model(...)"),
]

ALTERNATIVES = [
    Variant("la_quadratic_tril", body("linear_attention", """\
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    T = q.shape[-2]
    sim = (fq @ fk.transpose(-2, -1)).masked_fill(~torch.ones(T, T, dtype=torch.bool, device=q.device).tril(), 0.0)
    return (sim @ v) / (sim.sum(-1, keepdim=True) + eps)  # (..., T, T) @ (..., T, d_v)
""")),
    Variant("la_einsum_cumsum", body("linear_attention", """\
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    S = torch.einsum("...tk,...tv->...tkv", fk, v).cumsum(-3)
    num = torch.einsum("...tk,...tkv->...tv", fq, S)
    return num / (torch.einsum("...tk,...tk->...t", fq, fk.cumsum(-2)).unsqueeze(-1) + eps)
""")),
    Variant("rec_outer_with_matmul", body(RLA, """\
    phi = lambda x: F.elu(x) + 1  # noqa: E731
    S, z = state if state is not None else (
        torch.zeros(*q.shape[:-2], q.shape[-1], v.shape[-1], dtype=q.dtype, device=q.device),
        torch.zeros(*q.shape[:-2], q.shape[-1], dtype=q.dtype, device=q.device))
    outs = []
    for q_i, k_i, v_i in zip(q.unbind(-2), k.unbind(-2), v.unbind(-2)):
        fk_i, fq_i = phi(k_i), phi(q_i)
        S = S + fk_i.unsqueeze(-1) @ v_i.unsqueeze(-2)
        z = z + fk_i
        outs.append((fq_i.unsqueeze(-2) @ S).squeeze(-2) / ((fq_i.unsqueeze(-2) @ z.unsqueeze(-1)).squeeze(-1) + eps))
    return torch.stack(outs, dim=-2), (S, z)
""")),
    Variant("delta_with_matmul", body("delta_rule", """\
    def phi(x):
        f = F.elu(x) + 1
        return f / f.sum(-1, keepdim=True)

    fq, fk = phi(q), phi(k)
    S = state if state is not None else torch.zeros(*q.shape[:-2], q.shape[-1], v.shape[-1], dtype=q.dtype,
                                                    device=q.device)
    outs = []
    for i in range(q.shape[-2]):
        k_i = fk[..., i, :].unsqueeze(-1)  # (..., d_k, 1)
        v_bar = (S.transpose(-2, -1) @ k_i).squeeze(-1)  # (..., d_v)
        S = S + beta[..., i].unsqueeze(-1).unsqueeze(-1) * (k_i @ (v[..., i, :] - v_bar).unsqueeze(-2))
        outs.append((S.transpose(-2, -1) @ fq[..., i, :].unsqueeze(-1)).squeeze(-1))
    return torch.stack(outs, dim=-2), S
""")),
    Variant("gen_prefill_one_token_at_a_time", body("generate_cached", """\
    tokens, cache, logits = prompt, None, None
    for t in range(prompt.shape[1]):  # the prompt token by token: the cache grows one position per call
        logits, cache = forward_cached(model, prompt[:, t:t + 1], cache)
    for step in range(max_new_tokens):
        next_token = logits[:, -1].argmax(-1, keepdim=True)
        tokens = torch.cat([tokens, next_token], dim=1)
        if step + 1 < max_new_tokens:
            logits, cache = forward_cached(model, next_token, cache)
    return tokens
""")),
]


def _uncached_gets_no_memory_points(report: GradeReport) -> None:
    expect_failing(report, ["generate_cached_builds_no_T_by_T_tensor"], "called model(...)")
    passed = {t.name for t in report.tests if t.passed}
    assert "generate_cached_equals_uncached_greedy" in passed, "the given decoding gives the right tokens"


def _recorder_switched_off(report: GradeReport) -> None:
    expect_needs_review(report, RLA)


def _builtin_attention_forbidden(report: GradeReport) -> None:
    expect_forbidden(report, "forward_cached", "scaled_dot_product_attention")


CHEATS = [
    # PyTorch's fused attention, which takes is_causal but no bottom-right offset: outside forward_cached's allowlist.
    Cheat("cache_uses_torch_attention", edit("forward_cached", (
        "        out, _ = scaled_dot_product_attention(q, k, v, mask)",
        "        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)")),
          check=_builtin_attention_forbidden),
    # The given uncached decoding under the exercise's name: the right tokens, but the cost is the one to avoid.
    Cheat("gen_returns_the_given_uncached_decoding",
          body("generate_cached", "    return generate_greedy(model, prompt, max_new_tokens)\n"),
          check=_uncached_gets_no_memory_points),
    # The T x T form with the grader's allocation recorder popped off torch's mode stack first.
    Cheat("rec_pops_the_recorder", {RLA: "from torch.utils._python_dispatch import _pop_mode\n\n\n"
                                         + body(RLA, "    _pop_mode()\n" + LOOP_BY_PARALLEL)[RLA]},
          check=_recorder_switched_off),
]


# --- red team (branch reda7): routes around the allocation recorder ------------------------------------------

# The T x T form in numpy when nothing asks for gradients (the memory check), the loop otherwise: no aten op sees
# the (T, T) array, and torch.from_numpy brings back only the (T, d_v) output.
NUMPY_QUADRATIC = """\
    if q.requires_grad or k.requires_grad or v.requires_grad or state is not None:
        return loop(q, k, v, eps, state)
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    a, b, c = fq.numpy(), fk.numpy(), v.numpy()
    steps = torch.arange(q.shape[-2]).numpy()
    sim = (a @ b.swapaxes(-1, -2)) * (steps[:, None] >= steps[None, :])  # (..., T, T), a numpy array
    return torch.from_numpy((sim @ c) / (sim.sum(-1, keepdims=True) + eps)), (fk.transpose(-2, -1) @ v, fk.sum(-2))
"""
# The same in Python lists of floats (tolist), for the memory check's 4-dimensional inputs.
LIST_QUADRATIC = """\
    if q.requires_grad or k.requires_grad or v.requires_grad or state is not None or q.dim() != 4:
        return loop(q, k, v, eps, state)
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    out = [[[] for _ in range(q.shape[1])] for _ in range(q.shape[0])]
    for b, (A2, B2, V2) in enumerate(zip(fq.tolist(), fk.tolist(), v.tolist())):
        for h, (A, B, V) in enumerate(zip(A2, B2, V2)):
            for i in range(len(A)):
                sim = [sum(x * y for x, y in zip(A[i], B[j])) for j in range(i + 1)]  # row i of the T x T matrix
                out[b][h].append([sum(s * V[j][c] for j, s in enumerate(sim)) / (sum(sim) + eps)
                                  for c in range(len(V[0]))])
    return torch.tensor(out, dtype=q.dtype), (fk.transpose(-2, -1) @ v, fk.sum(-2))
"""
# A loop with no T x T tensor that reads the whole prefix again at every step: T^2 / 2 work, O(T) memory.
PREFIX_REREAD = LOOP_START + """\
        sim = (fk[..., : i + 1, :] * fq[..., i, None, :]).sum(-1)  # (..., i + 1): the prefix, read again
        num = (sim[..., None] * v[..., : i + 1, :]).sum(-2) + (fq[..., i, :, None] * S).sum(-2)
        den = sim.sum(-1, keepdim=True) + (fq[..., i, :] * z).sum(-1, keepdim=True) + eps
        outs.append(num / den)
    return torch.stack(outs, dim=-2), (S + fk.transpose(-2, -1) @ v, z + fk.sum(-2))
"""
# No cache kept between steps: each step re-reads the whole sequence with forward_cached in chunks of 4 tokens, so
# no tensor is T x T and model(...) is never called.
GEN_CHUNKED_REREAD = """\
    if prompt.shape[1] + max_new_tokens > model.max_len:
        raise ValueError(f"{prompt.shape[1]} + {max_new_tokens} tokens exceed max_len={model.max_len}")
    tokens = prompt
    for step in range(max_new_tokens):
        cache = None
        for t in range(0, tokens.shape[1], 4):
            logits, cache = forward_cached(model, tokens[:, t:t + 4], cache)
        tokens = torch.cat([tokens, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
    return tokens
"""


def with_loop(source: str) -> dict[str, str]:
    """recurrent_linear_attention running ``source``, with the solution's loop as the helper ``loop``."""
    loop = solution(RLA).replace("def recurrent_linear_attention(", "def loop(", 1)
    return {RLA: loop + "\n\n" + body(RLA, source)[RLA]}


def _memory_check_fails(exercise: str, test: str, says: str):
    def check(report: GradeReport) -> None:
        expect_failing(report, [test], says)
        lost = [t.name for t in report.tests if t.exercise == exercise and not t.passed and t.name != test]
        assert not lost, f"only {test} should fail; results:\n{failures(report)}"
    return check


REC_MEMORY = "recurrent_builds_no_T_by_T_tensor"
CHEATS += [
    Cheat("rec_quadratic_in_numpy", with_loop(NUMPY_QUADRATIC),
          check=_memory_check_fails(RLA, REC_MEMORY, "out of torch")),
    Cheat("rec_quadratic_in_python_lists", with_loop(LIST_QUADRATIC),
          check=_memory_check_fails(RLA, REC_MEMORY, "out of torch")),
    Cheat("rec_rereads_the_prefix", body(RLA, PREFIX_REREAD),
          check=_memory_check_fails(RLA, REC_MEMORY, "grows like T^2")),
    Cheat("gen_rereads_the_prefix_in_chunks", body("generate_cached", GEN_CHUNKED_REREAD),
          check=_memory_check_fails("generate_cached", "generate_cached_builds_no_T_by_T_tensor", "grows like T^2")),
]
# The Python-list form again, with the features read out as integers (x * 2^50, rounded): not a float in sight.
INT_QUADRATIC = LIST_QUADRATIC.replace("    fq, fk = F.elu(q) + 1, F.elu(k) + 1\n", """\
    fq, fk = F.elu(q) + 1, F.elu(k) + 1

    def unscale(x):
        return [unscale(y) for y in x] if isinstance(x, list) else x / 2**50

    as_list = {id(t): unscale((t * 2**50).round().long().tolist()) for t in (fq, fk, v)}
""", 1).replace("zip(fq.tolist(), fk.tolist(), v.tolist())", "zip(as_list[id(fq)], as_list[id(fk)], as_list[id(v)])")
assert INT_QUADRATIC.count("as_list[") == 3
# The prefix re-read with memory wasted on short inputs: the ratio of two lengths is all the growth check sees.
PADDED_REREAD = PREFIX_REREAD.replace("    outs = []\n", """\
    outs = []
    waste = [q.new_zeros(2048) for _ in range(100 if q.shape[-2] < 200 else 0)]  # 204,800 elements: short T only
""", 1)


@dataclass
class KnownLimit(Cheat):
    """A route that still gets credit it should not: graded as a strict xfail whose reason is ``weakness``."""

    weakness: str = ""


CHEATS += [
    Cheat("rec_quadratic_via_integers", with_loop(INT_QUADRATIC),
          check=_memory_check_fails(RLA, REC_MEMORY, "out of torch")),
    KnownLimit("rec_rereads_the_prefix_padding_short_calls", body(RLA, PADDED_REREAD),
               check=_memory_check_fails(RLA, REC_MEMORY, "grows like T^2"),
               weakness="the growth check compares two lengths, and code that wastes memory on the shorter one "
                        "flattens the ratio; no absolute bound separates the two at T = 256: the solution creates "
                        "59,448 new elements, a minimal prefix re-read only 2 x 256^2 / 2 = 65,536 more"),
]
# The Python-list form again, with the features read out as bool bit planes of (x + 64) * 2^44: only booleans leave.
BITS_QUADRATIC = LIST_QUADRATIC.replace("    fq, fk = F.elu(q) + 1, F.elu(k) + 1\n", """\
    fq, fk = F.elu(q) + 1, F.elu(k) + 1

    def combine(planes):
        if isinstance(planes[0], list):
            return [combine([p[i] for p in planes]) for i in range(len(planes[0]))]
        return sum(int(bit) << b for b, bit in enumerate(planes)) / 2**44 - 64

    def read_out(t):
        n = ((t + 64) * 2**44).round().long()
        return combine([((n >> b) & 1).bool().tolist() for b in range(52)])

    as_list = {id(t): read_out(t) for t in (fq, fk, v)}
""", 1).replace("zip(fq.tolist(), fk.tolist(), v.tolist())", "zip(as_list[id(fq)], as_list[id(fk)], as_list[id(v)])")
assert BITS_QUADRATIC.count("as_list[") == 3
CHEATS += [Cheat("rec_quadratic_via_bit_planes", with_loop(BITS_QUADRATIC),
                 check=_memory_check_fails(RLA, REC_MEMORY, "out of torch"))]
CHEATS += [
    # The mutant cache_full_mask_then_sliced with its (T, T) mask held as bytes: the recorder used to skip uint8
    # (the worker's wire bytes) wherever it came from.
    Cheat("cache_full_mask_in_uint8", edit("forward_cached", (MASK, "mask = torch.ones(T_past + T_new, T_past + T_new, "
                                                                    "dtype=torch.uint8, device=tokens.device).tril()"
                                                                    "[-T_new:].bool()")),
          check=_memory_check_fails("forward_cached", "cache_step_builds_no_T_by_T_tensor", "T x T tensor")),
]
