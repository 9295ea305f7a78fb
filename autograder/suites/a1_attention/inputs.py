"""Seeded inputs of a1_attention's hidden tests, and the comparison every expected value goes through.

Not a test module (pytest collects ``test_*.py`` only). A test's draws come from ``ctx``, seeded by the submission
and the test's name: the builders below draw in a fixed order, and changing that order changes every regrade's
inputs. Expected values are the float64 reference (``autograder/reference.py``); where PyTorch has the same
computation (torch.softmax, F.scaled_dot_product_attention, nn.MultiheadAttention), its float64 result is
compared too, which cross-checks the reference on every run.
"""

from __future__ import annotations

import math

import torch

from autograder import autodiff, reference
from autograder.checks import expect_close, fail, tolerance
from autograder.session import RemoteModule
from autograder.suites.common import load_weights


def sdpa_inputs(ctx, batch=(2, 3), t_q=5, t_k=7, d_k=8, d_v=6, dtype=torch.float64):
    """q (*batch, t_q, d_k), k (*batch, t_k, d_k) and v (*batch, t_k, d_v), drawn in that order."""
    return (ctx.randn(*batch, t_q, d_k, dtype=dtype), ctx.randn(*batch, t_k, d_k, dtype=dtype),
            ctx.randn(*batch, t_k, d_v, dtype=dtype))


def build_mha(ctx, d_model: int, n_heads: int, bias: bool = True,
              dtype: torch.dtype = torch.float64) -> tuple[RemoteModule, dict]:
    """The student's MultiHeadAttention(d_model, n_heads, bias=bias) in eval() mode and ``dtype``, loaded with
    random weights; and those weights in float64, keyed as ``reference.multi_head_attention`` reads them."""
    module = ctx.construct("MultiHeadAttention", d_model, n_heads, bias=bias)
    shapes = reference.mha_shapes(d_model, bias)
    got = {name: tuple(t.shape) for name, t in module.parameters.items()}
    if got != shapes:
        wrong = sorted(n for n in set(got) & set(shapes) if got[n] != shapes[n])
        fail(f"MultiHeadAttention({d_model}, {n_heads}, bias={bias}) has unexpected parameters: "
             f"missing {sorted(set(shapes) - set(got)) or 'none'}, extra {sorted(set(got) - set(shapes)) or 'none'}, "
             f"wrong shape {wrong or 'none'}",
             f"Expected four nn.Linear({d_model}, {d_model}, bias={bias}) named q_proj, k_proj, v_proj, out_proj")
    # Every weight, then every bias, each N(0, 1/d_model): the draw order the suite has always had.
    state = {name: ctx.randn(*shapes[name], scale=1 / math.sqrt(d_model))
             for name in sorted(shapes, key=lambda name: name.endswith(".bias"))}
    module.set_mode(train=False, dtype=dtype)
    load_weights(module, {name: value.to(dtype) for name, value in state.items()})
    return module, state


def grads_of(fn, inputs, grad_outputs) -> tuple[torch.Tensor, ...]:
    """The gradients of sum(fn(*inputs) * grad_outputs) with respect to each input, on float64 copies."""
    leaves = [t.detach().double().requires_grad_(True) for t in inputs]
    outputs = fn(*leaves)
    return autodiff.grad(outputs if isinstance(outputs, tuple) else (outputs,), leaves, grad_outputs)


def expect_matches(got, want: torch.Tensor, pytorch: torch.Tensor, what: str, *, dtype: torch.dtype,
                   scale: float = 1.0, suspects: dict | None = None, hint: str | None = None) -> None:
    """``got`` equals the float64 reference ``want`` within ``dtype``'s tolerance (naming a known bug it matches
    instead), then ``pytorch``: PyTorch's own float64 result for the same inputs."""
    tol = tolerance(dtype, scale)
    expect_close(got, want, what, **tol, suspects=suspects, hint=hint)
    expect_close(got, pytorch, f"{what} (compared with PyTorch's)", **tol, hint=hint)
