"""Checks FeedForward and SwiGLU share: both are position-wise networks with weights, judged the same way.

Not collected (no ``test_*``). The gradients' oracle is ``autograder/reference.py`` (``feed_forward`` or ``swiglu``),
differentiated by autograd in float64.
"""

from __future__ import annotations

import torch

from autograder import autodiff
from autograder.checks import expect_close, expect_no_backward_error, expect_tensor, fail, guess, tolerance
from autograder.suites.common import FLOATS, expect_deterministic, expect_keeps_dtype_device_input

DETACHED = guess("Is part of the forward pass detached (.detach(), .data, torch.no_grad())?")


def expect_grad(value, what: str, hint: str):
    if value is None:
        fail(f"{what} is None: no gradient reached it", hint)
    return value


def _position_mixing(grad: torch.Tensor, b: int, t: int) -> tuple | None:
    """The first (b', t') other than (b, t) where the input gradient is not exactly 0."""
    mask = grad.ne(0).any(-1)
    mask[b, t] = False
    if mask.any():
        return tuple(int(i) for i in mask.nonzero()[0])
    return None


def expect_position_wise(ctx, module, name: str, d_model: int) -> None:
    """Backpropagate a gradient that is nonzero at one (b, t) only: every other position of x gets exactly 0."""
    B, T = 2, 6
    b, t = ctx.randint(0, B), ctx.randint(0, T)
    x = ctx.randn(B, T, d_model, scale=2.0)
    g = torch.zeros(B, T, d_model, dtype=torch.float64)
    g[b, t] = ctx.randn(d_model)
    result = ctx.forward(module, x, grad={"wrt": [0], "grad_outputs": [g]})
    expect_tensor(result.value, f"{name} output", shape=(B, T, d_model), dtype=torch.float64)
    expect_no_backward_error(result, name)
    returned = expect_grad(result.input_grads[0], "d out / d x", guess("Is the output detached from x?"))
    grad = expect_tensor(returned, "d out / d x", shape=x.shape)
    leak = _position_mixing(grad, b, t)
    if leak is not None:
        fail(f"the output at position [{b}, {t}] depends on the input at position [{leak[0]}, {leak[1]}] "
             f"(d out[{b}, {t}] / d x[{leak[0]}, {leak[1]}] is not 0)",
             f"{name} must act on each position independently: the same layers applied to every x[b, t] on its own, "
             "with no mean, norm or softmax over the sequence (dim 1) or the batch (dim 0)")
    if not grad[b, t].ne(0).any():
        fail(f"d out[{b}, {t}] / d x[{b}, {t}] is 0: the output at a position does not depend on the input there",
             guess("Is the output detached from x, or computed from something other than x?"))


def expect_matches_in_float32(ctx, module, state: dict, oracle, suspects, x_shape: tuple, what: str) -> None:
    """A float32 module on a float32 x matches ``oracle(state, x)`` (float64) within 10x the float32 tolerance.

    Two or three matrix products of <= 64 terms each: 10x the single-product float32 tolerance.
    """
    x = ctx.randn(*x_shape, dtype=torch.float32)
    expect_close(ctx.forward(module, x).value, oracle(state, x), what, **tolerance(torch.float32, 10),
                 suspects=suspects(state, x))


def expect_gradients_match(ctx, module, state: dict, oracle, name: str, d_model: int) -> None:
    """d loss / d x and d loss / d every parameter, for loss = sum(out * g), match ``oracle(state, x)``'s in float64."""
    x, g = ctx.randn(2, 5, d_model), ctx.randn(2, 5, d_model)
    result = ctx.forward(module, x, grad={"wrt": [0], "grad_outputs": [g]})
    expect_no_backward_error(result, name)
    leaves = {k: v.clone().requires_grad_(True) for k, v in state.items()}
    x64 = x.clone().requires_grad_(True)
    autodiff.backward(oracle(leaves, x64), g)
    expect_close(expect_grad(result.input_grads[0], "d loss / d x", DETACHED), x64.grad, "d loss / d x",
                 **tolerance(torch.float64), hint=DETACHED)
    for param, leaf in leaves.items():
        got = result.param_grads.get(param)
        if got is None:
            fail(f"{param} received no gradient",
                 guess(f"Is {param.split('.')[0]} used in forward, on a path that is not detached?"))
        expect_close(got, leaf.grad, f"gradient of {param}", **tolerance(torch.float64))


def expect_module_hygiene(ctx, build, what: str, d_model: int) -> None:
    """In float32 and float64, ``build(dtype)``'s output keeps dtype and device, x stays, a second forward agrees."""
    for dtype in FLOATS:
        module = build(dtype)
        x = ctx.randn(2, 4, d_model, dtype=dtype)
        first = ctx.forward(module, x)
        expect_keeps_dtype_device_input(ctx, first, x, f"{what} output", dtype)
        expect_deterministic(ctx.forward(module, x), first, "forward")
