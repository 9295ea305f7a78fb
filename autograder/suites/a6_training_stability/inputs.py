"""What the a6 tests build: random weights at a scale where every part shows, and the student's modules holding them.

``build_rezero`` and ``build_residual`` construct the student's module, check its submodules and parameters against
the API first (a failure names the likely slip), and load weights drawn by ``random_state``: the state dict that
``autograder/reference.py`` reads. ``build_lm`` scrambles the notebook's given ``TransformerLM`` for gpt2_init_.
"""

from __future__ import annotations

import math

import torch

from autograder import autodiff, reference
from autograder.checks import expect_close, expect_no_backward_error, expect_tensor, fail, tolerance
from autograder.suites.common import load_weights, parameter_mismatch

# A block or a stack against the float64 reference with the same weights: roundoff near 1e-13; 10x (outputs) and
# 100x (gradients, one more pass) the per-op float64 tolerance of checks.TOLERANCES leave room for other summation
# orders, while every bug we know of moves outputs by more than 1e-3.
OUTPUT_TOL = tolerance(torch.float64, 10)
GRADIENT_TOL = tolerance(torch.float64, 100)
SELF_TOL = tolerance(torch.float64)  # a module compared with itself (causality)


def random_state(ctx, shapes: dict) -> dict[str, torch.Tensor]:
    """Weights drawn by name in sorted order: matrices N(0, 1/fan_in), biases N(0, 0.1**2), norm weights
    1 + N(0, 0.2**2) and biases N(0, 0.2**2), embeddings N(0, 1), ReZero's alpha 0.6 + N(0, 0.2**2) (away from 0,
    so that the branches count)."""
    state = {}
    for name, shape in sorted(shapes.items()):
        module, _, kind = name.rpartition(".")
        if name == "alpha" or name.endswith(".alpha"):
            state[name] = 0.6 + ctx.randn(*shape, scale=0.2)
        elif "norm" in module.rpartition(".")[2]:
            state[name] = (1.0 if kind == "weight" else 0.0) + ctx.randn(*shape, scale=0.2)
        elif kind == "bias":
            state[name] = ctx.randn(*shape, scale=0.1)
        elif module.endswith("emb"):
            state[name] = ctx.randn(*shape)
        else:
            state[name] = ctx.randn(*shape, scale=1 / math.sqrt(shape[1]))
    return state


def expect_parameters(module, expected: dict, what: str, hints: dict[str, str], default: str) -> None:
    """The module's parameters have exactly the names and shapes of ``expected``; ``hints`` maps a name that is
    extra, missing or misshapen (or a part of it) to what the slip probably is."""
    mismatch = parameter_mismatch(module, expected, what)
    if mismatch is None:
        return
    for part, hint in hints.items():
        if any(part in name for name in mismatch.extra + mismatch.missing + mismatch.wrong):
            fail(mismatch.message, hint, named=True)
    fail(mismatch.message, default)


def submodule_kinds(module, kinds: dict[str, tuple[str, str]], what: str) -> None:
    """Each named submodule exists and is of the given class (its name ends with it)."""
    subs = module.submodules
    for name, (kind, want) in kinds.items():
        if name not in subs:
            fail(f"{what} has no submodule named {name}", f"Create self.{name} = {want} in __init__")
        if not subs[name]["type"].endswith(kind):
            fail(f"{what}.{name} is a {subs[name]['type'].rpartition('.')[2]}, expected {want}")


# --- ReZeroBlock ------------------------------------------------------------------------------------

REZERO_HINTS = {
    "norm": "ReZero has no norm: drop the LayerNorms; the block is x = x + alpha * attn(x); x + alpha * ffn(x)",
    "alpha": "One scalar per layer, shared by both branches: self.alpha = nn.Parameter(torch.zeros(1))",
}


def check_rezero(module, d_model: int, d_ff: int | None, what: str) -> None:
    submodule_kinds(module, {"attn": ("MultiHeadAttention", "MultiHeadAttention(d_model, n_heads)"),
                             "ffn": ("FeedForward", "FeedForward(d_model, d_ff, dropout=dropout)")}, what)
    expect_parameters(module, reference.rezero_shapes(d_model, d_ff), what, REZERO_HINTS,
                      "Create attn, ffn and alpha exactly as the exercise lists them")


def build_rezero(ctx, d_model: int, n_heads: int, d_ff: int | None = None, dtype=torch.float64):
    """The student's ReZeroBlock with random weights (alpha included), and those weights."""
    what = f"ReZeroBlock({d_model}, {n_heads}{'' if d_ff is None else f', d_ff={d_ff}'})"
    module = ctx.construct("ReZeroBlock", d_model, n_heads, d_ff)
    check_rezero(module, d_model, d_ff, what)
    state = random_state(ctx, reference.rezero_shapes(d_model, d_ff))
    module.set_mode(train=False, dtype=dtype)
    load_weights(module, {k: v.to(dtype) for k, v in state.items()})
    return module, state, what


# --- ResiDual ---------------------------------------------------------------------------------------

RESIDUAL_HINTS = {
    "norm_dual": "The dual stream has one norm of its own, at the end: self.norm_dual = LayerNorm(d_model)",
    "blocks.": "blocks is an nn.ModuleList of n_layers ResiDualBlocks, each with norm1, attn, norm2 and ffn",
}


def check_residual(module, d_model: int, n_layers: int, d_ff: int | None, what: str) -> None:
    submodule_kinds(module, {"blocks": ("ModuleList", "an nn.ModuleList of ResiDualBlock"),
                             "norm_dual": ("LayerNorm", "LayerNorm(d_model)")}, what)
    subs = module.submodules
    blocks = sorted(n for n in subs if n.startswith("blocks.") and n.count(".") == 1)
    if len(blocks) != n_layers:
        fail(f"{what} has {len(blocks)} distinct block(s), expected n_layers = {n_layers}",
             "Create a new ResiDualBlock for every layer: nn.ModuleList(ResiDualBlock(...) for _ in range(n_layers))")
    for name in blocks:
        if not subs[name]["type"].endswith(".ResiDualBlock"):
            fail(f"{what}.{name} is a {subs[name]['type'].rpartition('.')[2]}, expected a ResiDualBlock")
    expect_parameters(module, reference.residual_shapes(d_model, n_layers, d_ff), what, RESIDUAL_HINTS,
                      "Create blocks and norm_dual exactly as the exercise lists them")


def build_residual(ctx, d_model: int, n_heads: int, n_layers: int, d_ff: int | None = None, dtype=torch.float64,
                   state: dict | None = None):
    """The student's ResiDual with ``state`` (random weights when not given), and those weights."""
    what = f"ResiDual({d_model}, {n_heads}, n_layers={n_layers}{'' if d_ff is None else f', d_ff={d_ff}'})"
    module = ctx.construct("ResiDual", d_model, n_heads, n_layers, d_ff)
    check_residual(module, d_model, n_layers, d_ff, what)
    state = random_state(ctx, reference.residual_shapes(d_model, n_layers, d_ff)) if state is None else state
    module.set_mode(train=False, dtype=dtype)
    load_weights(module, {k: v.to(dtype) for k, v in state.items()})
    return module, state, what


def causal(T: int) -> torch.Tensor:
    return reference.causal_mask(T)


# --- gpt2_init_ -------------------------------------------------------------------------------------

def build_lm(ctx, vocab_size: int, d_model: int, n_heads: int, n_layers: int, max_len: int, tie_weights=False):
    """The notebook's given TransformerLM with every parameter scrambled (uniform in [0.5, 1.5]: no rule of GPT-2's
    initialisation holds by accident), and its parameter shapes."""
    model = ctx.construct("TransformerLM", vocab_size, d_model, n_heads, n_layers, max_len, tie_weights=tie_weights)
    shapes = reference.lm_shapes(vocab_size, d_model, n_layers, max_len, tie_weights=tie_weights)
    scrambled = {name: 0.5 + torch.rand(shape, generator=ctx.generator, dtype=torch.float64)
                 for name, shape in shapes.items()}
    if tie_weights:
        scrambled["lm_head.weight"] = scrambled["tok_emb.weight"]
    model.set_mode(train=False, dtype=torch.float32)
    load_weights(model, {k: v.to(torch.float32) for k, v in scrambled.items()}, "the given TransformerLM")
    return model, shapes


def expect_gradients(result, state: dict, x: torch.Tensor, g: torch.Tensor, oracle, what: str, hint=None) -> None:
    """The input's and every parameter's gradient after ``ctx.forward(..., grad=...)`` with grad_outputs ``g`` equal
    the float64 reference's: ``oracle(state, x)`` is the reference forward."""
    expect_no_backward_error(result, what.partition("(")[0])
    leaves = {k: v.clone().requires_grad_(True) for k, v in state.items()}
    x_leaf = x.clone().requires_grad_(True)
    autodiff.backward(oracle(leaves, x_leaf), g)
    expect_close(result.input_grads[0], x_leaf.grad, f"{what}: d loss / d x", **GRADIENT_TOL, hint=hint)
    for name in sorted(state):
        got = result.param_grads.get(name)
        if got is None:
            fail(f"{what}: {name} received no gradient", "Is every part used in forward, without .detach()?")
        expect_close(got, leaves[name].grad, f"{what}: gradient of {name}", **GRADIENT_TOL)


def expect_output(ctx, module, x: torch.Tensor, mask, want: torch.Tensor, suspects: dict, what: str, hint: str) -> None:
    """The module's float64 output on (x, mask) equals ``want`` (a known bug among ``suspects`` is named), in eval()
    and again in train() mode: with dropout 0 (the default) both compute the same function, so a module that does
    something else while training is caught (the module is left in eval())."""
    got = ctx.forward(module, x, mask).value
    expect_tensor(got, f"{what} output", shape=tuple(x.shape), dtype=torch.float64)
    expect_close(got, want, f"{what} output", **OUTPUT_TOL, suspects=suspects, hint=hint)
    module.set_mode(train=True, dtype=torch.float64)
    got = ctx.forward(module, x, mask).value
    module.set_mode(train=False, dtype=torch.float64)
    expect_close(got, want, f"{what} output in train() mode (dropout 0)", **OUTPUT_TOL, suspects=suspects,
                 hint="With dropout 0, train() and eval() compute the same function: do not branch on "
                      "self.training (nn.Dropout already does what differs)")


# A float32 output against the float64 reference of the same weights: 10x the per-op float32 tolerance of
# checks.TOLERANCES for a whole block or stack; every bug we know of moves outputs by more than 1e-2.
FLOAT32_TOL = tolerance(torch.float32, 10)


def expect_same_in_float32(result, want: torch.Tensor, what: str) -> None:
    """A float32 call's output equals the float64 reference ``want`` within float32 roundoff: the module computes
    the same function in both dtypes (nothing keyed on the dtype)."""
    expect_close(result.value, want, f"{what} float32 output (against the float64 reference)", **FLOAT32_TOL,
                 hint="float32 and float64 inputs must go through the same computation: do not branch on x.dtype")
