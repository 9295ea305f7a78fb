"""The student's FeedForward and SwiGLU, built, checked for their layers and loaded with seeded random weights.

Shared by the package's tests (this module is not collected: it is no ``test_*``). Each builder returns the module
and the float64 state dict it loaded, keyed as ``autograder/reference.py`` expects it. The draws (``ctx.randn``) are
made in a fixed order, which every regrade must keep: they are the test's inputs.
"""

from __future__ import annotations

import math

import torch

from autograder.checks import fail
from autograder.suites.common import load_weights


def _ffn_structure_error(got: dict, d_model: int, d_ff: int, bias: bool, default_d_ff: bool, call: str) -> str | None:
    """What is wrong with FeedForward's parameter shapes ``got`` (name -> shape), in one sentence; None when right."""
    expected = {"up.weight": (d_ff, d_model), "down.weight": (d_model, d_ff)}
    if bias:
        expected.update({"up.bias": (d_ff,), "down.bias": (d_model,)})
    if got == expected:
        return None
    up, down = got.get("up.weight"), got.get("down.weight")
    if up == (d_model, d_ff) and down == (d_ff, d_model) and d_ff != d_model:
        return (f"{call}: up has weight shape {up} and down {down}, so up maps d_ff -> d_model and down d_model -> "
                f"d_ff: up and down are swapped. up = nn.Linear(d_model, d_ff) expands, down = nn.Linear(d_ff, "
                "d_model) projects back (nn.Linear(in, out) stores its weight as (out, in))")
    if default_d_ff and up is not None and len(up) == 2 and up[1] == d_model and up[0] != d_ff:
        ratio = up[0] / d_model
        return (f"{call} without d_ff gives up {up[0]} output features = {ratio:g} * d_model: "
                f"d_ff must default to 4 * d_model = {d_ff} (Vaswani et al.: d_model = 512, d_ff = 2048)")
    biases = sorted(n for n in got if n.endswith("bias"))
    if not bias and biases:
        return (f"{call} has bias parameters {biases}: with bias=False neither layer has a bias "
                "(pass bias=bias to nn.Linear)")
    if bias and {"up.bias", "down.bias"} - set(biases):
        return (f"{call} has no bias in {sorted({'up.bias', 'down.bias'} - set(biases))}: "
                "with bias=True both layers have one")
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


def build_swiglu(ctx, d_model, d_ff, bias=None, dtype=torch.float64):
    """The student's SwiGLU with random weights loaded; returns (module, state in float64).

    ``bias=None`` calls ``SwiGLU(d_model, d_ff)`` and so relies on the default, which is False.
    """
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
        wrong = sorted(f"{n} {got[n]} (expected {expected[n]})"
                       for n in set(got) & set(expected) if got[n] != expected[n])
        fail(f"{call} has unexpected parameters: missing {missing or 'none'}, extra {extra or 'none'}, "
             f"wrong shape {wrong or 'none'}",
             f"Expected gate = nn.Linear({d_model}, {d_ff}), up = nn.Linear({d_model}, {d_ff}) and "
             f"down = nn.Linear({d_ff}, {d_model}), each with bias={bias}")
    state = {name: ctx.randn(*shape, scale=1 / math.sqrt(shape[-1]) if name.endswith("weight") else 0.5)
             for name, shape in expected.items()}
    module.set_mode(train=False, dtype=dtype)
    load_weights(module, {k: v.to(dtype) for k, v in state.items()})
    return module, state
