"""The seeded modules and weights of a4_residual_norm's hidden tests, and the checks they share.

A test's name seeds ``ctx``; the builders here draw from it in a fixed order, so changing an order changes every
regrade's inputs. Each builder returns the student's module holding the test's weights, and those weights as a
state dict keyed as ``autograder/reference.py`` expects.
"""

from __future__ import annotations

import math

import torch

from autograder.checks import expect_close, expect_no_backward_error, expect_tensor, fail, guess, tolerance
from autograder.reference import EPS, block_shapes
from autograder.suites.a4_residual_norm import oracles
from autograder.suites.common import (
    FLOATS,
    dtype_name,
    expect_deterministic,
    expect_keeps_dtype_device_input,
    load_weights,
    parameter_mismatch,
)

NORM_CLASSES = {"layer": "LayerNorm", "rms": "RMSNorm"}


def expect_parameters(module, expected: dict, what: str, hint: str) -> None:
    """The module's parameters have exactly the names and shapes of ``expected``."""
    mismatch = parameter_mismatch(module, expected, what, limit=False)
    if mismatch:
        fail(mismatch.message, hint)


def parameter_values(module) -> dict:
    """A module's parameters as plain tensors (they cross the wire as nn.Parameter)."""
    return {name: value.tensor for name, value in module.parameters.items()}


def expect_param_grad(grads: dict, name: str, want: torch.Tensor, what: str, tol: dict) -> None:
    got = grads.get(name)
    if got is None:
        fail(f"{what}{name} received no gradient",
             f"Is {name.rpartition('.')[0] or name} used in forward, on a path that is not detached?")
    expect_close(got, want, f"gradient of {what}{name}", **tol)


# --- the norms --------------------------------------------------------------------------------------

def build_layer_norm(ctx, d_model: int, eps: float = EPS, affine: bool = True, dtype=torch.float64):
    """The student's LayerNorm holding random weight and bias (if affine), and its state: weight, bias or nothing."""
    module = ctx.construct("LayerNorm", d_model, eps=eps, elementwise_affine=affine)
    expected = {"weight": (d_model,), "bias": (d_model,)} if affine else {}
    expect_parameters(module, expected, f"LayerNorm({d_model}, elementwise_affine={affine})",
                      "Create weight (ones) and bias (zeros) as nn.Parameter of shape (d_model,) when "
                      "elementwise_affine is True, and register both as None otherwise")
    module.set_mode(train=False, dtype=dtype)
    state = {}
    if affine:
        state = {"weight": (1 + 0.5 * ctx.randn(d_model)).to(dtype), "bias": (0.5 * ctx.randn(d_model)).to(dtype)}
        load_weights(module, state)
    return module, state


def build_rms_norm(ctx, d_model: int, eps: float = EPS, dtype=torch.float64):
    """The student's RMSNorm holding a random weight, and its state."""
    module = ctx.construct("RMSNorm", d_model, eps=eps)
    expect_parameters(module, {"weight": (d_model,)}, f"RMSNorm({d_model})",
                      "RMSNorm has one parameter, weight = nn.Parameter(torch.ones(d_model)), and no bias")
    module.set_mode(train=False, dtype=dtype)
    state = {"weight": (1 + 0.5 * ctx.randn(d_model)).to(dtype)}
    load_weights(module, state)
    return module, state


def expect_norm_gradients(ctx, module, state: dict, kind: str, what: str, detached: str) -> None:
    """The gradients of a norm (``kind`` "layer" or "rms") with respect to x and to every parameter match the
    reference's; ``detached`` guesses at the bug when d loss / d x does not."""
    x, g = ctx.randn(3, 4, 12), ctx.randn(3, 4, 12)
    result = ctx.forward(module, x, grad={"wrt": [0], "grad_outputs": [g]})
    expect_tensor(result.value, f"{what} output", shape=x.shape, dtype=x.dtype)
    expect_no_backward_error(result, what)
    want = oracles.norm_backward(kind, state, x, g)
    tol = tolerance(torch.float64)
    expect_close(result.input_grads[0], want.x_grad, "d loss / d x", **tol, hint=guess(detached))
    for name, grad in want.param_grads.items():
        expect_param_grad(result.param_grads, name, grad, "", tol)


def expect_norm_hygiene(ctx, build, what: str, dtype_hint: str | None = None) -> None:
    """For float32 and float64, a norm made by ``build`` keeps x's dtype and device, leaves x unchanged and gives
    the same output twice; ``dtype_hint`` says what to do when the dtype is wrong."""
    for dtype in FLOATS:
        module, _ = build(ctx, 8, dtype=dtype)
        x = ctx.randn(2, 3, 8, dtype=dtype)
        first = ctx.forward(module, x)
        if dtype_hint:
            expect_tensor(first.value, f"{what} output for a {dtype_name(dtype)} module and input", dtype=dtype,
                          hint=dtype_hint)
        expect_keeps_dtype_device_input(ctx, first, x, f"{what} output", dtype, input_name=f"{what}'s input x")
        expect_deterministic(ctx.forward(module, x), first, "forward", eval_mode=False)


# --- the block --------------------------------------------------------------------------------------

def in_draw_order(shapes: dict) -> list[str]:
    """A block's parameter names in the order this suite has always drawn them: the norms, attention, the FFN's
    weights, then its biases (reference.block_shapes lists them as the module does)."""
    def rank(name: str) -> int:
        part = name.partition(".")[0]
        return 0 if part.startswith("norm") else 1 if part == "attn" else 2 + name.endswith("bias")

    return sorted(shapes, key=rank)


def random_block_state(ctx, shapes: dict) -> dict:
    """Weights for a block; the norms' are random too, so norm1 and norm2 can be told apart."""
    state = {}
    for name in in_draw_order(shapes):
        shape = shapes[name]
        if name.startswith("norm"):
            state[name] = (1.0 if name.endswith("weight") else 0.0) + 0.3 * ctx.randn(*shape)
        elif name.endswith("weight"):
            state[name] = ctx.randn(*shape, scale=1 / math.sqrt(shape[1]))
        else:
            state[name] = ctx.randn(*shape, scale=0.1)
    return state


def block_hint(shapes_got: dict, shapes_want: dict, norm: str, bias: bool) -> str:
    if "norm1.weight" in shapes_got and "norm2.weight" not in shapes_got:
        return ("norm2 is missing: create two separate norms (self.norm2 = self.norm1 makes them one module with one "
                "set of parameters)")
    if norm == "rms" and "norm1.bias" in shapes_got:
        return 'With norm="rms" both norms must be RMSNorm(d_model), which has no bias'
    if not bias and any(n.endswith("proj.bias") or n.startswith("ffn.") and n.endswith(".bias") for n in shapes_got):
        return "Pass bias=bias on to MultiHeadAttention and FeedForward"
    if shapes_got.get("ffn.up.weight") != shapes_want.get("ffn.up.weight"):
        return "Pass d_ff on to FeedForward (which makes it 4 * d_model when d_ff is None)"
    return ("Expected norm1, attn (MultiHeadAttention), norm2 and ffn (FeedForward) and nothing else with parameters: "
            "TransformerBlock(d_model, n_heads, d_ff=None, norm_first=True, activation='gelu', dropout=0.0, bias=True, "
            "norm='layer')")


def expect_block_parameters(module, d_model: int, n_heads: int, d_ff=None, bias: bool = True, norm: str = "layer"):
    """The block has exactly reference.block_shapes' parameters; returns them (name -> shape)."""
    expected = block_shapes(d_model, d_ff, bias, norm)
    got = {name: tuple(t.shape) for name, t in module.parameters.items()}
    what = f"TransformerBlock({d_model}, {n_heads}, d_ff={d_ff}, bias={bias}, norm={norm!r})"
    expect_parameters(module, expected, what, block_hint(got, expected, norm, bias))
    return expected


def build_block(ctx, d_model: int, n_heads: int, d_ff=None, norm_first: bool = True, activation: str = "gelu",
                bias: bool = True, norm: str = "layer", dropout: float = 0.0, dtype=torch.float64, state=None):
    """The student's block holding the test's weights (random unless ``state`` is given), and those weights."""
    module = ctx.construct("TransformerBlock", d_model, n_heads, d_ff=d_ff, norm_first=norm_first,
                           activation=activation, dropout=dropout, bias=bias, norm=norm)
    expected = expect_block_parameters(module, d_model, n_heads, d_ff, bias, norm)
    state = random_block_state(ctx, expected) if state is None else state
    module.set_mode(train=False, dtype=dtype)
    load_weights(module, {name: value.to(dtype) for name, value in state.items()})
    return module, state
