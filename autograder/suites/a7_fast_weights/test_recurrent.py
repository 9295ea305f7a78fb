"""recurrent_linear_attention and delta_rule: fast-weight memories processed one step at a time, from a state.

recurrent_linear_attention is linear attention as a recurrent network (Katharopoulos et al., 2020;
Schlag, Irie & Schmidhuber, 2021): S = S + phi(k_i) v_i^T, z = z + phi(k_i), out_i = phi(q_i)^T S /
(phi(q_i)^T z + eps). delta_rule is Schlag, Irie & Schmidhuber (2021), section 4.2, with sum-normalised elu + 1
features: v_bar = S^T phi(k_i), S = S + beta_i phi(k_i) (v_i - v_bar)^T, out_i = S^T phi(q_i). Expected:
``reference.recurrent_linear_attention`` (the T x T form plus the state's contribution) and
``reference.delta_rule`` (a loop). The memory checks measure, in the worker, the largest tensor a call creates
(``inputs.call_measured``): at T = 256 with d_k = 4, d_v = 6 a T x T matrix holds 256 * 256 elements per head,
a state for every step 256 * 24, while the inputs and outputs hold at most 256 * 6.
"""

from __future__ import annotations

import torch

from autograder import reference
from autograder.checks import (
    expect_close,
    expect_tensor,
    expect_unchanged,
    tolerance,
)
from autograder.hidden import hidden
from autograder.known_bugs.a7_fast_weights import delta_suspects, recurrent_suspects
from autograder.suites.a7_fast_weights.inputs import (
    FLOAT32_TOL,
    call_measured,
    expect_input_gradients,
    expect_linear_work,
    expect_small,
    expect_two,
    qkv,
)
from autograder.suites.common import expect_deterministic, expect_keeps_dtype_device_input

TOL = tolerance(torch.float64, 10)
RECURRENT_HINT = "At each step write S = S + outer(phi(k_i), v_i) and z = z + phi(k_i), then read with phi(q_i)"
DELTA_HINT = ("Features (elu + 1) / their sum; v_bar = S^T phi(k_i); S = S + beta_i outer(phi(k_i), v_i - v_bar); "
              "out_i = S^T phi(q_i) after the update")
STEP_HINT = "Update one running state per step; never recompute it from the start of the sequence"
# The memory check: batch 1, 2 heads, T = 256 steps, d_k = 4, d_v = 6.
MEMORY = {"batch": (1, 2), "T": 256, "d_k": 4, "d_v": 6}


def memory_bound() -> tuple[int, int, int]:
    """(bound, a T x T tensor, a state per step), in elements: the bound is twice the largest input or output."""
    heads = MEMORY["batch"][0] * MEMORY["batch"][1]
    T, d_k, d_v = MEMORY["T"], MEMORY["d_k"], MEMORY["d_v"]
    return 2 * heads * T * max(d_k, d_v), heads * T * T, heads * T * d_k * d_v


def positive_state(ctx, batch, d_k, d_v):
    """A state as an earlier call would leave it: S = sum of phi(k) v^T, z = sum of phi(k) (positive)."""
    k, v = ctx.randn(*batch, 5, d_k), ctx.randn(*batch, 5, d_v)
    return reference.linear_attention_state(k, v)


def call_recurrent(ctx, q, k, v, **kwargs):
    what = f"recurrent_linear_attention(q {tuple(q.shape)}, ...)"
    out, state = expect_two(ctx.call("recurrent_linear_attention", q, k, v, **kwargs), what, "(out, (S, z))")
    S, z = expect_two(state, f"the state of {what}", "(S, z)")
    return out, S, z


# --- recurrent_linear_attention -------------------------------------------------------------------------------

@hidden("recurrent_linear_attention", points=1, group="shapes")
def test_recurrent_shapes(ctx):
    """returns out (..., T, d_v) and the state S (..., d_k, d_v), z (..., d_k), for 0 to 2 batch dimensions"""
    for batch, T, d_k, d_v in [((), 4, 3, 5), ((2,), 6, 4, 2), ((2, 3), 3, 5, 5)]:
        q, k, v = qkv(ctx, batch, T, d_k, d_v)
        out, S, z = call_recurrent(ctx, q, k, v)
        expect_tensor(out, "out", shape=(*batch, T, d_v))
        expect_tensor(S, "the state S", shape=(*batch, d_k, d_v),
                      hint="S is the fast-weight matrix: sum of outer(phi(k_i), v_i), shape (..., d_k, d_v)")
        expect_tensor(z, "the state z", shape=(*batch, d_k), hint="z is the sum of phi(k_i), shape (..., d_k)")


@hidden("recurrent_linear_attention", points=2, group="numerics")
def test_recurrent_matches_linear_attention(ctx):
    """gives linear attention's outputs and final state S = sum phi(k) v^T, z = sum phi(k) (float64, float32, eps)"""
    for dtype in (torch.float64, torch.float32):
        q, k, v = qkv(ctx, (2, 2), 9, 4, 3)
        out, S, z = call_recurrent(ctx, *(t.to(dtype) for t in (q, k, v)))
        tol = TOL if dtype == torch.float64 else FLOAT32_TOL
        expect_close(out, reference.linear_attention(q, k, v), f"recurrent_linear_attention's out ({dtype})", **tol,
                     suspects=recurrent_suspects(q, k, v), hint=RECURRENT_HINT)
        S_want, z_want = reference.linear_attention_state(k, v)
        expect_close(S, S_want, "the final S", **tol, hint="Return the state after the last step: (S, z)")
        expect_close(z, z_want, "the final z", **tol, hint="Return the state after the last step: (S, z)")
    q, k, v = qkv(ctx, (2,), 6, 4, 3)  # an eps that shows: every other call leaves it at 1e-6
    out, _, _ = call_recurrent(ctx, q, k, v, eps=0.5)
    expect_close(out, reference.linear_attention(q, k, v, 0.5), "recurrent_linear_attention's out with eps=0.5",
                 **TOL, suspects=recurrent_suspects(q, k, v, 0.5), hint="The denominator is phi(q_i) . z + eps, "
                 "with the eps passed in")


@hidden("recurrent_linear_attention", points=1, group="properties")
def test_recurrent_continues_from_a_state(ctx):
    """continues from a given state (S, z): the two halves of a sequence give the outputs of the whole"""
    q, k, v = qkv(ctx, (2,), 6, 4, 3)
    state = positive_state(ctx, (2,), 4, 3)
    out, S, z = call_recurrent(ctx, q, k, v, state=state)
    want, (S_want, z_want) = reference.recurrent_linear_attention(q, k, v, state=state)
    expect_close(out, want, "out continued from a state", **TOL, suspects=recurrent_suspects(q, k, v, state=state),
                 hint="With state=(S, z) start from that S and z instead of zeros")
    expect_close(S, S_want, "S continued from a state", **TOL)
    expect_close(z, z_want, "z continued from a state", **TOL)


@hidden("recurrent_linear_attention", points=2, group="properties")
def test_recurrent_builds_no_T_by_T_tensor(ctx):
    """one step at a time: at T = 256 no tensor above twice the inputs, and about twice T = 128's new memory"""
    q, k, v = qkv(ctx, MEMORY["batch"], MEMORY["T"], MEMORY["d_k"], MEMORY["d_v"])
    result, stats = call_measured(ctx, "recurrent_linear_attention", q, k, v)
    out, _ = expect_two(result.value, "recurrent_linear_attention", "(out, (S, z))")
    expect_close(out, reference.linear_attention(q, k, v), "out at T = 256", **TOL, hint=RECURRENT_HINT)
    bound, quadratic, per_step = memory_bound()
    expect_small(stats, bound, "recurrent_linear_attention at T = 256", quadratic, per_step)
    _, half = call_measured(ctx, "recurrent_linear_attention", *(t[..., ::2, :] for t in (q, k, v)))
    expect_linear_work(half, stats, "fresh", "recurrent_linear_attention at T = 128 and T = 256", STEP_HINT)


@hidden("recurrent_linear_attention", points=1, group="gradients")
def test_recurrent_gradients_match(ctx):
    """gradients of out w.r.t. q, k and v match the reference's"""
    q, k, v = qkv(ctx, (2,), 5, 3, 4)
    g_out = ctx.randn(2, 5, 4)
    expect_input_gradients(ctx, "recurrent_linear_attention", (q, k, v), tuple("qkv"), reference.linear_attention,
                           g_out, "the state")


@hidden("recurrent_linear_attention", points=1, group="hygiene")
def test_recurrent_keeps_dtype_device_and_inputs(ctx):
    """keeps dtype and device, leaves q, k, v and the state unmodified, is deterministic"""
    for dtype in (torch.float32, torch.float64):
        q, k, v = qkv(ctx, (2,), 4, 3, 2, dtype=dtype)
        S0, z0 = (t.to(dtype) for t in positive_state(ctx, (2,), 3, 2))
        result = ctx.call_full("recurrent_linear_attention", q, k, v, 1e-6, (S0, z0))
        out, _ = expect_two(result.value, "recurrent_linear_attention", "(out, (S, z))")
        result.value = out
        for i, name in enumerate("qkv"):
            expect_keeps_dtype_device_input(ctx, result, (q, k, v)[i], "recurrent_linear_attention", dtype, name, arg=i)
        S_after, z_after = expect_two(result.args_after[4], "the state passed in", "(S, z)")
        hint = "Do not update the state you were given in place: S = S + ..., not S += ..."
        expect_unchanged(S0, S_after, "the state S passed in", hint)
        expect_unchanged(z0, z_after, "the state z passed in", hint)
        again = ctx.call_full("recurrent_linear_attention", q, k, v, 1e-6, (S0, z0))
        expect_deterministic(again.value[0], result, "recurrent_linear_attention", eval_mode=False)


# --- delta_rule ------------------------------------------------------------------------------------------------

def betas(ctx, *shape):
    return torch.sigmoid(ctx.randn(*shape))  # in (0, 1), as sigma(W_beta x) in the paper


def call_delta(ctx, q, k, v, beta, **kwargs):
    what = f"delta_rule(q {tuple(q.shape)}, ...)"
    return expect_two(ctx.call("delta_rule", q, k, v, beta, **kwargs), what, "(out, S)")


@hidden("delta_rule", points=1, group="shapes")
def test_delta_shapes(ctx):
    """returns out (..., T, d_v) and the memory S (..., d_k, d_v), for 0 to 2 batch dimensions"""
    for batch, T, d_k, d_v in [((), 4, 3, 5), ((2,), 6, 4, 2), ((2, 3), 3, 5, 5)]:
        q, k, v = qkv(ctx, batch, T, d_k, d_v)
        out, S = call_delta(ctx, q, k, v, betas(ctx, *batch, T))
        expect_tensor(out, "out", shape=(*batch, T, d_v))
        expect_tensor(S, "the memory S", shape=(*batch, d_k, d_v),
                      hint="S is (..., d_k, d_v): S^T phi(q) is a d_v vector")


@hidden("delta_rule", points=3, group="numerics")
def test_delta_matches_reference(ctx):
    """matches the delta rule with sum-normalised elu + 1 features, read after each update (float64, float32)"""
    for dtype in (torch.float64, torch.float32):
        q, k, v = qkv(ctx, (2, 2), 7, 4, 3)
        beta = betas(ctx, 2, 2, 7)
        out, S = call_delta(ctx, *(t.to(dtype) for t in (q, k, v, beta)))
        want, S_want = reference.delta_rule(q, k, v, beta)
        tol = TOL if dtype == torch.float64 else FLOAT32_TOL
        expect_close(out, want, f"delta_rule's out ({dtype})", **tol, suspects=delta_suspects(q, k, v, beta),
                     hint=DELTA_HINT)
        expect_close(S, S_want, f"delta_rule's final S ({dtype})", **tol, hint="Return the memory after the last step")


@hidden("delta_rule", points=1, group="properties")
def test_delta_continues_from_a_state(ctx):
    """continues from a given memory S instead of zeros"""
    q, k, v = qkv(ctx, (2,), 5, 4, 3)
    beta, S0 = betas(ctx, 2, 5), ctx.randn(2, 4, 3)
    out, S = call_delta(ctx, q, k, v, beta, state=S0)
    want, S_want = reference.delta_rule(q, k, v, beta, state=S0)
    expect_close(out, want, "out continued from a memory S", **TOL, suspects=delta_suspects(q, k, v, beta, S0),
                 hint="With state=S start from that S instead of zeros")
    expect_close(S, S_want, "S continued from a memory", **TOL)


@hidden("delta_rule", points=1, group="properties")
def test_delta_builds_no_T_by_T_tensor(ctx):
    """one step at a time: at T = 256 no tensor above twice the inputs, and about twice T = 128's new memory"""
    q, k, v = qkv(ctx, MEMORY["batch"], MEMORY["T"], MEMORY["d_k"], MEMORY["d_v"])
    beta = betas(ctx, *MEMORY["batch"], MEMORY["T"])
    result, stats = call_measured(ctx, "delta_rule", q, k, v, beta)
    out, _ = expect_two(result.value, "delta_rule", "(out, S)")
    expect_close(out, reference.delta_rule(q, k, v, beta)[0], "out at T = 256", **TOL, hint=DELTA_HINT)
    bound, quadratic, per_step = memory_bound()
    expect_small(stats, bound, "delta_rule at T = 256", quadratic, per_step)
    _, half = call_measured(ctx, "delta_rule", *(t[..., ::2, :] for t in (q, k, v)), beta[..., ::2])
    expect_linear_work(half, stats, "fresh", "delta_rule at T = 128 and T = 256", STEP_HINT)


@hidden("delta_rule", points=1, group="gradients")
def test_delta_gradients_match(ctx):
    """gradients of out w.r.t. q, k, v and beta match the reference's"""
    q, k, v = qkv(ctx, (2,), 5, 3, 4)
    beta, g_out = betas(ctx, 2, 5), ctx.randn(2, 5, 4)
    expect_input_gradients(ctx, "delta_rule", (q, k, v, beta), ("q", "k", "v", "beta"),
                           lambda *leaves: reference.delta_rule(*leaves)[0], g_out, "the memory S")


@hidden("delta_rule", points=1, group="hygiene")
def test_delta_keeps_dtype_device_and_inputs(ctx):
    """keeps dtype and device, leaves q, k, v, beta and the state unmodified, is deterministic"""
    for dtype in (torch.float32, torch.float64):
        q, k, v = qkv(ctx, (2,), 4, 3, 2, dtype=dtype)
        beta, S0 = betas(ctx, 2, 4).to(dtype), ctx.randn(2, 3, 2, dtype=dtype)
        result = ctx.call_full("delta_rule", q, k, v, beta, S0)
        out, _ = expect_two(result.value, "delta_rule", "(out, S)")
        result.value = out
        for i, name in enumerate(("q", "k", "v", "beta", "the state S")):
            expect_keeps_dtype_device_input(ctx, result, (q, k, v, beta, S0)[i], "delta_rule", dtype, name, arg=i)
        again = ctx.call_full("delta_rule", q, k, v, beta, S0)
        expect_deterministic(again.value[0], result, "delta_rule", eval_mode=False)
