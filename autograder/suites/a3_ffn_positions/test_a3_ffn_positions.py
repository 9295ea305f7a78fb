"""Hidden suite for a3_ffn_positions: the position-wise feed-forward network, SwiGLU, sinusoidal positions.

Oracles are computed in float64 in the grader's process from the weights the test loads into
the student's module (``F.linear`` with ``F.gelu``, ``F.relu`` or ``F.silu``), and from the
formula of Vaswani et al., "Attention Is All You Need" (2017), §3.3 (FFN) and §3.5 (positions);
SwiGLU is from Shazeer, "GLU Variants Improve Transformer" (2020).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from autograder.checks import guess, expect_no_backward_error, expect_close, expect_equal, expect_tensor, expect_unchanged, fail, tolerance
from autograder.session import StudentRaised
from autograder.hidden import hidden
from autograder.suites.common import load_weights
from autograder.wire import WireTensor


FLOATS = (torch.float32, torch.float64)



# --- shared helpers ----------------------------------------------------------------------

def _expect_grad(value, what: str, hint: str):
    if value is None:
        fail(f"{what} is None: no gradient reached it", hint)
    return value


def _part(value: WireTensor, index) -> WireTensor:
    """A slice of a returned tensor, still a WireTensor (the checks read a returned value only in that form)."""
    part = value.tensor[index]
    return WireTensor(part, value.dtype, tuple(part.shape), value.type_name, value.requires_grad,
                      value.has_grad_fn, value.device)


def _position_mixing(grad: torch.Tensor, b: int, t: int) -> tuple | None:
    """The first (b', t') other than (b, t) where the input gradient is not exactly 0."""
    mask = grad.ne(0).any(-1)
    mask[b, t] = False
    if mask.any():
        return tuple(int(i) for i in mask.nonzero()[0])
    return None


def _expect_position_wise(ctx, module, name: str, d_model: int) -> None:
    """Backpropagate a gradient that is nonzero at one (b, t) only: every other position of x gets exactly 0."""
    B, T = 2, 6
    b, t = ctx.randint(0, B), ctx.randint(0, T)
    x = ctx.randn(B, T, d_model, scale=2.0)
    g = torch.zeros(B, T, d_model, dtype=torch.float64)
    g[b, t] = ctx.randn(d_model)
    result = ctx.forward(module, x, grad={"wrt": [0], "grad_outputs": [g]})
    expect_tensor(result.value, f"{name} output", shape=(B, T, d_model), dtype=torch.float64)
    expect_no_backward_error(result, name)
    returned = _expect_grad(result.input_grads[0], "d out / d x", "Is the output detached from x?")
    grad = expect_tensor(returned, "d out / d x", shape=x.shape)
    leak = _position_mixing(grad, b, t)
    if leak is not None:
        fail(f"the output at position [{b}, {t}] depends on the input at position [{leak[0]}, {leak[1]}] "
             f"(d out[{b}, {t}] / d x[{leak[0]}, {leak[1]}] is not 0)",
             f"{name} must act on each position independently: the same layers applied to every x[b, t] on its own, "
             "with no mean, norm or softmax over the sequence (dim 1) or the batch (dim 0)")
    if not grad[b, t].ne(0).any():
        fail(f"d out[{b}, {t}] / d x[{b}, {t}] is 0: the output at a position does not depend on the input there",
             "Is the output detached from x, or computed from something other than x?")


# --- FeedForward ---------------------------------------------------------------------------

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu}


def oracle_ffn(x, state, activation="gelu"):
    x = x.to(torch.float64)
    h = F.linear(x, state["up.weight"], state.get("up.bias"))
    return F.linear(ACTIVATIONS[activation](h), state["down.weight"], state.get("down.bias"))


def ffn_suspects(x, state, activation):
    """Outputs of plausible wrong feed-forward networks with the same weights."""
    x = x.to(torch.float64)
    W1, b1, W2, b2 = state["up.weight"], state.get("up.bias"), state["down.weight"], state.get("down.bias")
    act = ACTIVATIONS[activation]
    up = lambda t: F.linear(t, W1, b1)  # noqa: E731
    down = lambda t: F.linear(t, W2, b2)  # noqa: E731
    suspects = {}
    if activation == "gelu":
        suspects["GELU with the tanh approximation (approximate=\"tanh\"); the exercise asks for the exact "
                 "erf-based GELU, nn.GELU() / F.gelu(h)"] = down(F.gelu(up(x), approximate="tanh"))
        suspects["ReLU instead of GELU: is activation=\"gelu\" honoured?"] = down(F.relu(up(x)))
        suspects["x * sigmoid(1.702 x), the sigmoid approximation of GELU; use the exact F.gelu"] = \
            down(up(x) * torch.sigmoid(1.702 * up(x)))
        suspects["GELU computed as 0.5 h (1 + erf(h / 2)); the exact GELU is 0.5 h (1 + erf(h / sqrt(2)))"] = \
            down(0.5 * up(x) * (1 + torch.erf(up(x) / 2)))
    else:
        suspects["GELU instead of ReLU: is activation=\"relu\" honoured?"] = down(F.gelu(up(x)))
    suspects["no activation between up and down (two linear layers collapse into one)"] = down(up(x))
    suspects["the activation applied after down instead of between up and down"] = act(down(up(x)))
    suspects["the activation applied to the input before up instead of between up and down"] = down(up(act(x)))
    suspects["x + FFN(x): the residual connection belongs to the Transformer block (Assignment 4), not inside the FFN"] = \
        x + down(act(up(x)))
    if b1 is not None:
        suspects["the biases left out of the forward pass"] = F.linear(act(F.linear(x, W1)), W2)
    return suspects


def _ffn_structure_error(got: dict, d_model: int, d_ff: int, bias: bool, default_d_ff: bool, call: str) -> str | None:
    expected = {"up.weight": (d_ff, d_model), "down.weight": (d_model, d_ff)}
    if bias:
        expected.update({"up.bias": (d_ff,), "down.bias": (d_model,)})
    if got == expected:
        return None
    up, down = got.get("up.weight"), got.get("down.weight")
    if up == (d_model, d_ff) and down == (d_ff, d_model) and d_ff != d_model:
        return (f"{call}: up has weight shape {up} and down {down}, so up maps d_ff -> d_model and down d_model -> d_ff: "
                f"up and down are swapped. up = nn.Linear(d_model, d_ff) expands, down = nn.Linear(d_ff, d_model) projects back "
                "(nn.Linear(in, out) stores its weight as (out, in))")
    if default_d_ff and up is not None and len(up) == 2 and up[1] == d_model and up[0] != d_ff:
        ratio = up[0] / d_model
        return (f"{call} without d_ff gives up {up[0]} output features = {ratio:g} * d_model: "
                f"d_ff must default to 4 * d_model = {d_ff} (Vaswani et al.: d_model = 512, d_ff = 2048)")
    biases = sorted(n for n in got if n.endswith("bias"))
    if not bias and biases:
        return f"{call} has bias parameters {biases}: with bias=False neither layer has a bias (pass bias=bias to nn.Linear)"
    if bias and {"up.bias", "down.bias"} - set(biases):
        return f"{call} has no bias in {sorted({'up.bias', 'down.bias'} - set(biases))}: with bias=True both layers have one"
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    wrong = sorted(f"{n} {got[n]} (expected {expected[n]})" for n in set(got) & set(expected) if got[n] != expected[n])
    return (f"{call} has unexpected parameters: missing {missing or 'none'}, extra {extra or 'none'}, "
            f"wrong shape {wrong or 'none'}. Expected exactly up = nn.Linear({d_model}, {d_ff}, bias={bias}) and "
            f"down = nn.Linear({d_ff}, {d_model}, bias={bias})")


def build_ffn(ctx, d_model, d_ff=None, activation="gelu", bias=True, dropout=0.0, dtype=torch.float64, explicit=True,
              state=None):
    """The student's FeedForward with random weights (or ``state``) loaded; returns (module, state in float64).

    ``explicit=False`` calls ``FeedForward(d_model)`` alone, so the defaults themselves are tested.
    """
    if explicit:
        call = f"FeedForward({d_model}, d_ff={d_ff}, activation={activation!r}, bias={bias}, dropout={dropout})"
        module = ctx.construct("FeedForward", d_model, d_ff=d_ff, activation=activation, bias=bias, dropout=dropout)
    else:
        call = f"FeedForward({d_model})"
        module = ctx.construct("FeedForward", d_model)
    width = 4 * d_model if d_ff is None else d_ff
    got = {name: tuple(t.shape) for name, t in module.parameters.items()}
    problem = _ffn_structure_error(got, d_model, width, bias, d_ff is None, call)
    if problem:
        fail(problem)
    if state is None:
        state = {"up.weight": ctx.randn(width, d_model, scale=1 / math.sqrt(d_model)),
                 "down.weight": ctx.randn(d_model, width, scale=1 / math.sqrt(width))}
        if bias:
            state["up.bias"] = ctx.randn(width, scale=0.5)
            state["down.bias"] = ctx.randn(d_model, scale=0.5)
    module.set_mode(train=False, dtype=dtype)
    load_weights(module, {k: v.to(dtype) for k, v in state.items()})
    return module, state


@hidden("FeedForward", points=1, group="shapes")
def test_ffn_structure(ctx):
    """has up (d_model -> d_ff) and down (d_ff -> d_model); d_ff defaults to 4 * d_model; bias=False has no biases"""
    module, _ = build_ffn(ctx, 8, explicit=False)
    subs = module.submodules
    for name in ("up", "down"):
        if name not in subs:
            fail(f"FeedForward has no submodule named {name}", f"Create self.{name} as an nn.Linear in __init__")
    for d_model, d_ff, bias, activation in [(6, 10, False, "gelu"), (8, None, False, "relu"), (5, 7, True, "relu")]:
        build_ffn(ctx, d_model, d_ff, activation=activation, bias=bias)


@hidden("FeedForward", points=1, group="shapes")
def test_ffn_output_shapes(ctx):
    """keeps the shape (..., d_model) for 0, 1 and 2 leading dimensions besides T"""
    module, _ = build_ffn(ctx, 8, 12)
    for shape in [(5, 8), (2, 5, 8), (2, 3, 4, 8), (1, 1, 8)]:
        x = ctx.randn(*shape)
        expect_tensor(ctx.forward(module, x).value, f"FeedForward(8, 12) on x of shape {shape}", shape=shape)


@hidden("FeedForward", points=3, group="numerics")
def test_ffn_matches_reference(ctx):
    """matches down(act(up(x))) in float64 with the same weights, for GELU and ReLU, with and without biases"""
    for d_model, d_ff, activation, bias in [(12, 40, "gelu", True), (12, 40, "relu", True), (8, None, "gelu", False),
                                            (10, 24, "relu", False), (6, None, "default", True)]:
        if activation == "default":  # FeedForward(6) alone: d_ff = 24 and the default activation, GELU
            module, state = build_ffn(ctx, d_model, explicit=False)
            activation, what = "gelu", f"FeedForward({d_model}) output (default activation)"
        else:
            module, state = build_ffn(ctx, d_model, d_ff, activation=activation, bias=bias)
            what = f"FeedForward({d_model}, d_ff={d_ff}, activation={activation!r}, bias={bias}) output"
        x = ctx.randn(2, 7, d_model, scale=2.0)  # pre-activations of a few units, where GELU approximations differ most
        got = ctx.forward(module, x).value
        expect_tensor(got, f"{what} for a float64 module and input", dtype=torch.float64)
        expect_close(got, oracle_ffn(x, state, activation), what, **tolerance(torch.float64),
                     suspects=ffn_suspects(x, state, activation),
                     hint="The FFN is down(act(up(x))), with act = F.gelu (exact) or F.relu as `activation` says")


@hidden("FeedForward", points=1, group="numerics")
def test_ffn_matches_in_float32(ctx):
    """matches the float64 reference within float32 tolerance"""
    module, state = build_ffn(ctx, 16, 64, dtype=torch.float32)
    x = ctx.randn(3, 5, 16, dtype=torch.float32)
    # two matrix products of <= 64 terms each: 10x the single-product float32 tolerance
    expect_close(ctx.forward(module, x).value, oracle_ffn(x, state), "float32 FeedForward output",
                 **tolerance(torch.float32, 10), suspects=ffn_suspects(x, state, "gelu"))


@hidden("FeedForward", points=1, group="properties")
def test_ffn_acts_on_each_position_independently(ctx):
    """acts on each position independently: d out[b, t] / d x[b', t'] is exactly 0 for (b', t') != (b, t)"""
    module, _ = build_ffn(ctx, 8, 16)
    _expect_position_wise(ctx, module, "FeedForward", 8)


@hidden("FeedForward", points=2, group="gradients")
def test_ffn_gradients_match(ctx):
    """gradients w.r.t. the input and every parameter match the reference"""
    module, state = build_ffn(ctx, 8, 20)
    x, g = ctx.randn(2, 5, 8), ctx.randn(2, 5, 8)
    result = ctx.forward(module, x, grad={"wrt": [0], "grad_outputs": [g]})
    expect_no_backward_error(result, "FeedForward")
    leaves = {k: v.clone().requires_grad_(True) for k, v in state.items()}
    x64 = x.clone().requires_grad_(True)
    oracle_ffn(x64, leaves).backward(g)
    detached = guess("Is part of the forward pass detached (.detach(), .data, torch.no_grad())?")
    expect_close(_expect_grad(result.input_grads[0], "d loss / d x", detached), x64.grad, "d loss / d x",
                 **tolerance(torch.float64), hint=detached)
    grads = result.param_grads
    for name, leaf in leaves.items():
        got = grads.get(name)
        if got is None:
            fail(f"{name} received no gradient", f"Is {name.split('.')[0]} used in forward, on a path that is not detached?")
        expect_close(got, leaf.grad, f"gradient of {name}", **tolerance(torch.float64))


@hidden("FeedForward", points=1, group="hygiene")
def test_ffn_keeps_dtype_device_and_input(ctx):
    """keeps dtype and device, leaves x unmodified, is deterministic in eval() even with dropout=0.5"""
    for dtype in FLOATS:
        module, _ = build_ffn(ctx, 8, 16, dtype=dtype)
        x = ctx.randn(2, 4, 8, dtype=dtype)
        first = ctx.forward(module, x)
        expect_tensor(first.value, f"output for a {str(dtype)[6:]} module and input", dtype=dtype, device=ctx.session.device)
        expect_unchanged(x, first.args_after[0], "the input x")
        expect_equal(ctx.forward(module, x).value, first.value.tensor, "a second forward on the same input",
                     hint="In eval() mode the output must be deterministic")
    # The same weights with and without dropout: in eval() mode dropout is the identity, whatever else the module does.
    plain, state = build_ffn(ctx, 8, 16)
    dropping, _ = build_ffn(ctx, 8, 16, dropout=0.5, state=state)
    x = ctx.randn(2, 4, 8)
    expect_close(ctx.forward(dropping, x).value, expect_tensor(ctx.forward(plain, x).value, "FeedForward(8, 16) output"),
                 "FeedForward(8, 16, dropout=0.5) output in eval() mode", **tolerance(torch.float64),
                 hint="The reference here is your own FeedForward(8, 16) with the same weights and dropout=0.0. Dropout must "
                      "be off in eval() mode: use nn.Dropout, or F.dropout(h, p, training=self.training)")


# --- SwiGLU --------------------------------------------------------------------------------

def oracle_swiglu(x, state):
    x = x.to(torch.float64)
    gate = F.linear(x, state["gate.weight"], state.get("gate.bias"))
    up = F.linear(x, state["up.weight"], state.get("up.bias"))
    return F.linear(F.silu(gate) * up, state["down.weight"], state.get("down.bias"))


def swiglu_suspects(x, state):
    x = x.to(torch.float64)
    gate = F.linear(x, state["gate.weight"], state.get("gate.bias"))
    up = F.linear(x, state["up.weight"], state.get("up.bias"))
    down = lambda t: F.linear(t, state["down.weight"], state.get("down.bias"))  # noqa: E731
    return {
        "down(gate(x) * silu(up(x))): silu applied to up instead of gate": down(gate * F.silu(up)),
        "down(sigmoid(gate(x)) * up(x)): a sigmoid gate (GLU) instead of silu(gate) = gate * sigmoid(gate)":
            down(torch.sigmoid(gate) * up),
        "down(gelu(gate(x)) * up(x)): GELU (that is GEGLU) instead of silu": down(F.gelu(gate) * up),
        "down(silu(gate(x) * up(x))): silu applied after the product instead of to the gate alone": down(F.silu(gate * up)),
        "down(gate(x) * up(x)): no activation on the gate": down(gate * up),
        "down(silu(gate(x)) * silu(up(x))): silu applied to both branches": down(F.silu(gate) * F.silu(up)),
        "down(silu(gate(x))): the up branch is missing": down(F.silu(gate)),
        "down(silu(gate(x)) + up(x)): the branches are added, not multiplied": down(F.silu(gate) + up),
    }


def build_swiglu(ctx, d_model, d_ff, bias=None, dtype=torch.float64):
    """The student's SwiGLU with random weights loaded. ``bias=None`` relies on the default (False)."""
    if bias is None:
        call, module, bias = f"SwiGLU({d_model}, {d_ff})", ctx.construct("SwiGLU", d_model, d_ff), False
    else:
        call, module = f"SwiGLU({d_model}, {d_ff}, bias={bias})", ctx.construct("SwiGLU", d_model, d_ff, bias=bias)
    expected = {"gate.weight": (d_ff, d_model), "up.weight": (d_ff, d_model), "down.weight": (d_model, d_ff)}
    if bias:
        expected.update({"gate.bias": (d_ff,), "up.bias": (d_ff,), "down.bias": (d_model,)})
    got = {name: tuple(t.shape) for name, t in module.parameters.items()}
    if got != expected:
        biases = sorted(n for n in got if n.endswith("bias"))
        if not bias and biases:
            default = " bias defaults to False (as in LLaMA), and" if call.count(",") == 1 else ""
            fail(f"{call} has bias parameters {biases}:{default} with bias=False no layer has a bias "
                 "(pass bias=bias to each nn.Linear)")
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        wrong = sorted(f"{n} {got[n]} (expected {expected[n]})" for n in set(got) & set(expected) if got[n] != expected[n])
        fail(f"{call} has unexpected parameters: missing {missing or 'none'}, extra {extra or 'none'}, "
             f"wrong shape {wrong or 'none'}",
             f"Expected gate = nn.Linear({d_model}, {d_ff}), up = nn.Linear({d_model}, {d_ff}) and "
             f"down = nn.Linear({d_ff}, {d_model}), each with bias={bias}")
    state = {name: ctx.randn(*shape, scale=1 / math.sqrt(shape[-1]) if name.endswith("weight") else 0.5)
             for name, shape in expected.items()}
    module.set_mode(train=False, dtype=dtype)
    load_weights(module, {k: v.to(dtype) for k, v in state.items()})
    return module, state


@hidden("SwiGLU", points=1, group="shapes")
def test_swiglu_structure(ctx):
    """has gate, up (d_model -> d_ff) and down (d_ff -> d_model), no biases by default, and keeps (..., d_model)"""
    module, _ = build_swiglu(ctx, 8, 12)
    for name in ("gate", "up", "down"):
        if name not in module.submodules:
            fail(f"SwiGLU has no submodule named {name}", f"Create self.{name} as an nn.Linear in __init__")
    build_swiglu(ctx, 6, 10, bias=True)
    for shape in [(5, 8), (2, 5, 8), (2, 3, 4, 8)]:
        expect_tensor(ctx.forward(module, ctx.randn(*shape)).value, f"SwiGLU(8, 12) on x of shape {shape}", shape=shape)


@hidden("SwiGLU", points=2, group="numerics")
def test_swiglu_matches_reference(ctx):
    """matches down(silu(gate(x)) * up(x)) with the same weights (float64, and float32 within tolerance)"""
    for d_model, d_ff, bias in [(12, 32, None), (8, 20, True)]:
        module, state = build_swiglu(ctx, d_model, d_ff, bias=bias)
        x = ctx.randn(2, 6, d_model, scale=1.5)
        what = f"SwiGLU({d_model}, {d_ff}, bias={bool(bias)}) output"
        got = ctx.forward(module, x).value
        expect_tensor(got, f"{what} for a float64 module and input", dtype=torch.float64)
        expect_close(got, oracle_swiglu(x, state), what, **tolerance(torch.float64), suspects=swiglu_suspects(x, state),
                     hint="SwiGLU is down(F.silu(gate(x)) * up(x)), with silu(z) = z * sigmoid(z)")
    module, state = build_swiglu(ctx, 16, 48, dtype=torch.float32)
    x = ctx.randn(3, 4, 16, dtype=torch.float32)
    # three matrix products of <= 48 terms each: 10x the single-product float32 tolerance
    expect_close(ctx.forward(module, x).value, oracle_swiglu(x, state), "float32 SwiGLU output",
                 **tolerance(torch.float32, 10), suspects=swiglu_suspects(x, state))


@hidden("SwiGLU", points=1, group="properties")
def test_swiglu_acts_on_each_position_independently(ctx):
    """acts on each position independently: d out[b, t] / d x[b', t'] is exactly 0 for (b', t') != (b, t)"""
    module, _ = build_swiglu(ctx, 8, 12)
    _expect_position_wise(ctx, module, "SwiGLU", 8)


@hidden("SwiGLU", points=1, group="gradients")
def test_swiglu_gradients_match(ctx):
    """gradients w.r.t. the input and every parameter match the reference"""
    module, state = build_swiglu(ctx, 8, 12, bias=True)
    x, g = ctx.randn(2, 5, 8), ctx.randn(2, 5, 8)
    result = ctx.forward(module, x, grad={"wrt": [0], "grad_outputs": [g]})
    expect_no_backward_error(result, "SwiGLU")
    leaves = {k: v.clone().requires_grad_(True) for k, v in state.items()}
    x64 = x.clone().requires_grad_(True)
    oracle_swiglu(x64, leaves).backward(g)
    detached = guess("Is part of the forward pass detached (.detach(), .data, torch.no_grad())?")
    expect_close(_expect_grad(result.input_grads[0], "d loss / d x", detached), x64.grad, "d loss / d x",
                 **tolerance(torch.float64), hint=detached)
    for name, leaf in leaves.items():
        got = result.param_grads.get(name)
        if got is None:
            fail(f"{name} received no gradient", f"Is {name.split('.')[0]} used in forward, on a path that is not detached?")
        expect_close(got, leaf.grad, f"gradient of {name}", **tolerance(torch.float64))


@hidden("SwiGLU", points=1, group="hygiene")
def test_swiglu_keeps_dtype_device_and_input(ctx):
    """keeps dtype and device, leaves x unmodified, is deterministic in eval()"""
    for dtype in FLOATS:
        module, _ = build_swiglu(ctx, 8, 12, dtype=dtype)
        x = ctx.randn(2, 4, 8, dtype=dtype)
        first = ctx.forward(module, x)
        expect_tensor(first.value, f"output for a {str(dtype)[6:]} module and input", dtype=dtype, device=ctx.session.device)
        expect_unchanged(x, first.args_after[0], "the input x")
        expect_equal(ctx.forward(module, x).value, first.value.tensor, "a second forward on the same input",
                     hint="In eval() mode the output must be deterministic")


# --- sinusoidal_positions -----------------------------------------------------------------

def _angles(positions: torch.Tensor, d_model: int, base: float) -> torch.Tensor:
    """t / base**(2i/d_model) for every (t, i), in float64; columns i = 0 .. d_model/2 - 1."""
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)
    return positions.to(torch.float64)[:, None] / base ** (two_i / d_model)


def _interleave(even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
    return torch.stack([even, odd], dim=-1).flatten(-2)  # (T, d/2, 2) -> (T, d): column 2i even, 2i+1 odd


def oracle_positions(T: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """PE[t, 2i] = sin(t / base**(2i/d)), PE[t, 2i+1] = cos(t / base**(2i/d)), in float64."""
    angles = _angles(torch.arange(T), d_model, base)
    return _interleave(angles.sin(), angles.cos())


def positions_suspects(T: int, d_model: int, base: float) -> dict:
    t = torch.arange(T, dtype=torch.float64)
    angles = _angles(t, d_model, base)
    column = torch.arange(d_model, dtype=torch.float64)
    half = torch.arange(d_model // 2, dtype=torch.float64)
    by_column = t[:, None] / base ** (column / d_model)  # the exponent uses the column index j, not 2i = 2 * (j // 2)
    suspects = {
        "sin and cos swapped: PE[t, 2i] must be the sin, PE[t, 2i+1] the cos": _interleave(angles.cos(), angles.sin()),
        "concatenated halves [sin | cos]: the columns must interleave, sin in column 2i and cos in column 2i+1":
            torch.cat([angles.sin(), angles.cos()], dim=-1),
        "concatenated halves [cos | sin] (and sin/cos swapped); the columns must interleave":
            torch.cat([angles.cos(), angles.sin()], dim=-1),
        "positions that start at t = 1: the first row is position t = 0, PE[0] = [0, 1, 0, 1, ...]":
            oracle_positions(T + 1, d_model, base)[1:],
        "an exponent that uses the column index j (base**(j / d_model)) instead of 2i = 2 * (j // 2): "
        "columns 2i and 2i+1 must share one frequency": torch.where(column.long() % 2 == 0, by_column.sin(), by_column.cos()),
        "an exponent i / d_model instead of 2i / d_model": _interleave(*_sincos(t[:, None] / base ** (half / d_model))),
        "t * base**(2i/d_model) (multiplied, not divided)": _interleave(*_sincos(t[:, None] * base ** (2 * half / d_model))),
        "every frequency 1: the exponent 2i / d_model rounded to 0 by integer division (//)":
            _interleave(*_sincos(t[:, None].expand(T, d_model // 2))),
    }
    if base != 10000.0:
        suspects[f"base ignored: your encodings use base 10000, not base={base:g}"] = oracle_positions(T, d_model, 10000.0)
    return suspects


def _sincos(angles):
    angles = angles.to(torch.float64)
    return angles.sin(), angles.cos()


# float32 positions: an angle t * w (w <= 1) rounded in float32 is off by up to about t * 1e-7 rad for every
# float32 formulation we know (pow, exp/log frequencies, division, t * w or t / w; measured <= 9e-8 * t),
# then sin/cos add ~6e-8. The tolerance 1e-5 + 2e-6 * t (t = the last row of a block of rows) leaves
# 20x room, accepts even angles computed as exp(log t - ...), and is tiny next to every real bug:
# wrong formulas are off by more than 0.01 before t = 64, and float16 storage by 2e-4 at t < 64.
ROW_BLOCKS = (16, 64, 256, 1024, 4096)


def positions_atol(last_row: int) -> float:
    return 1e-5 + 2e-6 * last_row


def expect_positions_close(got, want: torch.Tensor, what: str, suspects: dict | None = None, hint: str | None = None) -> None:
    """Compare row blocks [0, 16), [16, 64), ... each with the tolerance of its last position."""
    T = want.shape[0]
    expect_tensor(got, what, shape=want.shape)
    start = 0
    for stop in ROW_BLOCKS:
        stop = min(stop, T)
        if stop <= start:
            break
        rows = slice(start, stop)
        block = _part(got, rows)
        named = _loose_suspect(block.tensor, {bug: s[rows] for bug, s in (suspects or {}).items()})
        if named is None and (block.tensor.to(torch.float64) - want[rows]).abs().max() < 1e-2:
            named = ("The values are close but outside float32 accuracy: is a position, frequency or angle rounded to "
                     "half precision (float16/bfloat16) somewhere?")
        expect_close(block, want[rows], f"{what}, rows t = {start}..{stop - 1}", atol=positions_atol(stop - 1), rtol=0.0,
                     hint=named or hint)
        start = stop


def _loose_suspect(got: torch.Tensor, suspects: dict) -> str | None:
    """The wrong formula the result follows, to 0.01.

    A wrong formula can reach angles of 10^4 radians and more (t * base**(2i/d)), which float32 rounds
    by 10^-3, so "matches" here means within 0.01: wrong layouts and formulas differ from the right one,
    and from each other, by far more.
    """
    got = got.to(torch.float64)
    for bug, wrong in suspects.items():
        if wrong.shape == got.shape and (got - wrong).abs().max() <= 1e-2:
            return f"Your result matches {bug}"
    return None


def _call_positions(ctx, *args, **kwargs):
    return ctx.call("sinusoidal_positions", *args, **kwargs)


@hidden("sinusoidal_positions", points=1, group="shapes")
def test_sinusoid_shapes(ctx):
    """returns a (T, d_model) tensor for several T and even d_model"""
    for T, d_model in [(1, 2), (7, 4), (50, 16), (33, 10), (128, 6)]:
        expect_tensor(_call_positions(ctx, T, d_model), f"sinusoidal_positions({T}, {d_model})", shape=(T, d_model),
                      hint="One row per position t = 0 .. T-1, one column per feature")


FORMULA_HINT = "PE[t, 2i] = sin(t / base**(2i/d_model)) and PE[t, 2i+1] = cos(t / base**(2i/d_model)), for t = 0 .. T-1"


@hidden("sinusoidal_positions", points=3, group="numerics")
def test_sinusoid_matches_formula(ctx):
    """matches PE[t, 2i] = sin(t / base**(2i/d)), PE[t, 2i+1] = cos(...) for several sizes and bases"""
    for T, d_model, base, how in [(64, 16, None, "default"), (40, 24, 100.0, "keyword"), (30, 10, 500.0, "positional")]:
        if how == "default":
            what, got, base = f"sinusoidal_positions({T}, {d_model})", _call_positions(ctx, T, d_model), 10000.0
        elif how == "keyword":
            what, got = f"sinusoidal_positions({T}, {d_model}, base={base:g})", _call_positions(ctx, T, d_model, base=base)
        else:
            what, got = f"sinusoidal_positions({T}, {d_model}, {base:g})", _call_positions(ctx, T, d_model, base)
        expect_positions_close(got, oracle_positions(T, d_model, base), what,
                               suspects=positions_suspects(T, d_model, base), hint=FORMULA_HINT)


@hidden("sinusoidal_positions", points=1, group="numerics")
def test_sinusoid_accurate_for_long_sequences(ctx):
    """stays within float32 accuracy up to T = 1024 (angles of up to 1023 radians)"""
    T, d_model = 1024, 64
    expect_positions_close(_call_positions(ctx, T, d_model), oracle_positions(T, d_model), f"sinusoidal_positions({T}, {d_model})",
                           suspects=positions_suspects(T, d_model, 10000.0), hint=FORMULA_HINT)


@hidden("sinusoidal_positions", points=2, group="properties")
def test_sinusoid_shift_is_a_linear_map(ctx):
    """PE[t + k] is one fixed linear map of PE[t], the same for every t"""
    T, d_model, k = 128, 16, ctx.randint(1, 9)
    pe = expect_tensor(_call_positions(ctx, T, d_model), f"sinusoidal_positions({T}, {d_model})", shape=(T, d_model))
    pe = pe.to(torch.float64)
    if not torch.isfinite(pe).all():
        fail(f"sinusoidal_positions({T}, {d_model}) contains non-finite values")
    now, later = pe[:-k], pe[k:]  # rows t and t + k, t = 0 .. T-k-1: 128 - k equations per column, 16 unknowns
    M = torch.linalg.lstsq(now, later, driver="gelsd").solution  # the best map with PE[t] @ M ~ PE[t + k]
    residual = (now @ M - later).abs()
    # float32 encodings are within ~3e-5 of exact here (t < 128, see positions_atol); a true shift map fits to
    # that, while encodings whose sin and cos columns do not share frequencies leave residuals above 0.1
    if residual.max() > 1e-3:
        t = int(residual.amax(-1).argmax())
        fail(f"no linear map takes PE[t] to PE[t + {k}] for every t: the best one misses row t + {k} = {t + k} by "
             f"{residual.max().item():.3g}",
             "Each pair of columns (2i, 2i+1) must hold sin and cos of one angle t * w_i, so that a shift by k is a "
             "rotation of every pair by k * w_i")


@hidden("sinusoidal_positions", points=1, group="hygiene")
def test_sinusoid_is_a_plain_float32_tensor(ctx):
    """returns a plain float32 tensor that needs no gradient, the same on every call"""
    what = "sinusoidal_positions(20, 8)"
    first = _call_positions(ctx, 20, 8)
    pe = expect_tensor(first, what, shape=(20, 8))
    if pe.dtype != torch.float32:
        fail(f"{what} has dtype {str(pe.dtype).removeprefix('torch.')}, expected float32",
             "The encodings have no tensor input to take a dtype from: return float32 (torch's default dtype); "
             "compute in float64 if you like, then convert with .to(torch.float32)")
    if first.requires_grad:
        fail(f"{what} requires grad", "The encodings are a fixed table, not a parameter: build them without requires_grad")
    expect_equal(_call_positions(ctx, 20, 8), pe, f"a second call to {what}", hint="The result should not depend on hidden state")
