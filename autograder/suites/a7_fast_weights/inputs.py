"""What the a7 tests build: seeded attention inputs, the given TransformerLM with random weights, and the
measurement of the largest tensor a call creates (in the worker, by the grader's recorder)."""

from __future__ import annotations

import torch

from autograder import autodiff, reference
from autograder.checks import expect_close, expect_no_backward_error, fail, guess, tolerance
from autograder.suites.common import load_weights
from autograder.wire import WireTensor

# Whole-model comparisons: float64 roundoff through two layers stays near 1e-13; 10x the per-op tolerance leaves
# room for other summation orders (as a5's LOGITS_TOL), while every known cache bug moves logits by > 1e-2.
LM_TOL = tolerance(torch.float64, 10)
# Linear attention divides prefix sums that grow with T; float32 cumsums over T <= 16 keep 1e-6 relative error.
FLOAT32_TOL = tolerance(torch.float32, 10)


def qkv(ctx, batch: tuple, T: int, d_k: int, d_v: int, dtype=torch.float64):
    """Seeded q, k (..., T, d_k) and v (..., T, d_v), drawn in float64 and cast."""
    return ctx.randn(*batch, T, d_k, dtype=dtype), ctx.randn(*batch, T, d_k, dtype=dtype), \
        ctx.randn(*batch, T, d_v, dtype=dtype)


def plain(value) -> torch.Tensor:
    """A returned value as a grader-side tensor."""
    return value.tensor if isinstance(value, WireTensor) else value


def wire(tensor: torch.Tensor) -> WireTensor:
    """A grader-side tensor dressed as a returned value, for checks that take one (slices of results)."""
    from autograder.suites.common import dtype_name

    return WireTensor(tensor=tensor, dtype=dtype_name(tensor.dtype), shape=tuple(tensor.shape),
                      type_name="torch.Tensor", requires_grad=False, has_grad_fn=False, device=str(tensor.device))


def expect_two(value, what: str, names: str) -> tuple:
    """A returned pair, e.g. (out, state)."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        fail(f"{what} returned {type(value).__name__}, expected a pair {names}")
    return tuple(value)


def expect_input_gradients(ctx, name: str, inputs: tuple, names: tuple, reference_out, g_out, what_is_kept: str):
    """Backpropagate ``g_out`` through the student's first output and through ``reference_out`` (float64, same
    inputs): the gradients w.r.t. every input agree within float64 x 10."""
    result = ctx.call_full(name, *inputs, grad={"wrt": list(range(len(inputs))), "grad_outputs": [g_out]})
    expect_no_backward_error(result, name)
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    autodiff.backward(reference_out(*leaves), g_out)
    for input_name, got, leaf in zip(names, result.input_grads, leaves):
        expect_close(got, leaf.grad, f"d loss / d {input_name}", **tolerance(torch.float64, 10),
                     hint=guess(f"Is {what_is_kept} detached, or updated in place (+=) where autograd needs it?"))


# --- memory, measured in the worker ----------------------------------------------------------------------

def call_measured(ctx, name: str, *args, **kwargs):
    """``ctx.call_full(name, ...)`` while the grader's recorder runs in the worker: (result, allocations), where
    allocations = {"largest": elements of the largest tensor any op created, "total": ..., "ops": ...}."""
    ctx.builtin("record_allocations")
    result = ctx.call_full(name, *args, **kwargs)
    stats = ctx.builtin("recorded_allocations")
    if not isinstance(stats, dict) or int(stats.get("ops", -1)) <= 0 or int(stats.get("exported", -1)) < 0:
        fail(f"the grader could not observe what {name} allocates (its recorder was switched off or saw no "
             "operation)", "Do not change torch's dispatch or function modes")
    if int(stats["exported"]) > EXPORT_LIMIT:
        fail(f"{name} read {int(stats['exported']):,} values out of torch (numpy(), tolist(), "
             "item(), float(...)) while the grader measured its memory: what is built from them there is out of "
             "its sight", "Compute with torch operations on tensors only")
    return result, stats


# A few scalars read out (a printed value, an .item() per generated token) are harmless; a computation in numpy or
# Python lists reads every key out (as floats, integers or bit planes), at least 2 heads x 128 x d_k = 1,024 values
# in the smallest measured call of the recurrences. Not counted: a data-dependent shape (x.nonzero().shape[0]), a
# channel of a few bits per op.
EXPORT_LIMIT = 64
# Doubling the length of a measured call: linear work about doubles what it counts, re-reading the whole prefix
# at every step about quadruples it (measured: 2.0 for the solutions, 3.7 to 3.8 for prefix re-reads).
GROWTH_LIMIT = 2.5


def expect_linear_work(short: dict, long: dict, key: str, what: str, hint: str) -> None:
    """``long`` (twice the length of ``short``) counts at most GROWTH_LIMIT times as much ``key`` ("fresh":
    elements of new storages; "ops": aten operations)."""
    ratio = int(long[key]) / max(int(short[key]), 1)
    if ratio > GROWTH_LIMIT:
        fail(f"{what}: twice the length made {ratio:.1f} times the work ({key}: {int(short[key]):,} -> "
             f"{int(long[key]):,}), it grows like T^2: the whole prefix is read again at every step", hint)


def expect_small(stats: dict, bound: int, what: str, quadratic: int, per_step: int | None = None) -> None:
    """The largest tensor created is at most ``bound`` elements; a failure says what a bigger one probably was."""
    largest = int(stats["largest"])
    if largest <= bound:
        return
    if largest >= quadratic:
        kind = f"a T x T tensor (here {quadratic:,} elements or more)"
    elif per_step is not None and largest >= per_step:
        kind = f"a state for every step (here {per_step:,} elements)"
    else:
        kind = "a tensor that grows faster than the inputs and outputs"
    fail(f"{what} created a tensor of {largest:,} elements, more than the {bound:,} it needs: {kind}",
         "Keep one running state and process the steps one at a time; never build the T x T matrix")


# --- the given TransformerLM -------------------------------------------------------------------------------

class LM:
    """The notebook's given TransformerLM (Pre-LN, learned positions), its weights and the reference."""

    def __init__(self, vocab_size=11, d_model=16, n_heads=2, n_layers=2, max_len=16):
        self.vocab_size, self.d_model, self.n_heads = vocab_size, d_model, n_heads
        self.n_layers, self.max_len = n_layers, max_len

    def build(self, ctx, dtype=torch.float64):
        """The given model holding random weights at a scale where every part shows: (model, state)."""
        model = ctx.construct("TransformerLM", self.vocab_size, self.d_model, self.n_heads, self.n_layers,
                              self.max_len)
        shapes = reference.lm_shapes(self.vocab_size, self.d_model, self.n_layers, self.max_len)
        state = reference.random_state(dict(sorted(shapes.items())), ctx.generator)
        model.set_mode(train=False, dtype=dtype)
        load_weights(model, {k: v.to(dtype) for k, v in state.items()},
                     "the given TransformerLM (restore its cell if you changed it)")
        return model, state

    def logits(self, state, tokens):
        return reference.transformer_lm(state, tokens, n_heads=self.n_heads)

    def cache(self, state, tokens, dtype=torch.float64):
        """The reference cache after reading ``tokens``: a list of (k, v) per block, in ``dtype``."""
        return [(k.to(dtype), v.to(dtype)) for k, v in reference.lm_keys_values(state, tokens, n_heads=self.n_heads)]

    def greedy(self, state, prompt, n):
        """generate_greedy replayed on the reference: the whole sequence at every step."""
        seq = prompt.clone()
        for _ in range(n):
            seq = torch.cat([seq, self.logits(state, seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
        return seq
