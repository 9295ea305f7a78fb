"""Known-wrong implementations of a3_ffn_positions: FeedForward, SwiGLU and sinusoidal_positions.

Each ``*_suspects`` function returns ``{what the bug is: what a plausible wrong implementation outputs}`` for the very
inputs a check gave the student's code, in float64. A module is given as its state dict, named as the student's
module names its parameters (``up.weight``, ``down.bias``, ``gate.weight``, ...): the hidden suite passes the weights
it loaded, a visible check passes ``module.state_dict()``. ``matching_bug`` names the suspect a result matches.

The hidden suite (``autograder/suites/a3_ffn_positions``) says "Your result matches <bug>" through
``checks.expect_close(..., suspects=...)``; the release's visible checks import this module, when the course package
is installed, to say the same sentence before submission. Only torch is used here: wrong answers, no reference.

The exercises come from Vaswani et al., "Attention Is All You Need" (2017), §3.3 (the feed-forward network) and
§3.5 (sinusoidal positions); Hendrycks & Gimpel, "Gaussian Error Linear Units (GELUs)" (2016); and Shazeer,
"GLU Variants Improve Transformer" (2020) for SwiGLU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from autograder.known_bugs import matching_bug  # noqa: F401  (the visible checks import it from here)

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"gelu": F.gelu, "relu": F.relu}


def _layer(state: dict, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The nn.Linear ``name`` of a state dict as a float64 function (without a bias when the state has none)."""
    weight, bias = state[f"{name}.weight"].double(), state.get(f"{name}.bias")
    return lambda t: F.linear(t, weight, None if bias is None else bias.double())


# --- FeedForward: down(act(up(x))) --------------------------------------------------------------

def ffn_suspects(state: dict, x: torch.Tensor, activation: str = "gelu") -> dict[str, torch.Tensor]:
    """Outputs of plausible wrong FeedForwards on x (..., d_model), with the weights ``state`` (up.*, down.*)."""
    x = x.double()
    up, down, act = _layer(state, "up"), _layer(state, "down"), ACTIVATIONS[activation]
    h = up(x)  # (..., d_ff), before the activation
    suspects = {}
    if activation == "gelu":
        suspects["GELU with the tanh approximation (approximate=\"tanh\"); the exercise asks for the exact "
                 "erf-based GELU, nn.GELU() / F.gelu(h)"] = down(F.gelu(h, approximate="tanh"))
        suspects["ReLU instead of GELU: is activation=\"gelu\" honoured?"] = down(F.relu(h))
        suspects["x * sigmoid(1.702 x), the sigmoid approximation of GELU; use the exact F.gelu"] = \
            down(h * torch.sigmoid(1.702 * h))
        suspects["GELU computed as 0.5 h (1 + erf(h / 2)); the exact GELU is 0.5 h (1 + erf(h / sqrt(2)))"] = \
            down(0.5 * h * (1 + torch.erf(h / 2)))
    else:
        suspects["GELU instead of ReLU: is activation=\"relu\" honoured?"] = down(F.gelu(h))
    suspects["no activation between up and down (two linear layers collapse into one)"] = down(h)
    suspects["the activation applied after down instead of between up and down"] = act(down(h))
    suspects["the activation applied to the input before up instead of between up and down"] = down(up(act(x)))
    suspects["x + FFN(x): the residual connection belongs to the Transformer block (Assignment 4), not inside "
             "the FFN"] = x + down(act(h))
    if "up.bias" in state:
        unbiased = {name: value for name, value in state.items() if not name.endswith("bias")}
        suspects["the biases left out of the forward pass"] = _layer(unbiased, "down")(act(_layer(unbiased, "up")(x)))
    return suspects


# --- SwiGLU: down(silu(gate(x)) * up(x)) --------------------------------------------------------

def swiglu_suspects(state: dict, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs of plausible wrong SwiGLUs on x (..., d_model), with the weights ``state`` (gate.*, up.*, down.*)."""
    x = x.double()
    gate, up, down = _layer(state, "gate")(x), _layer(state, "up")(x), _layer(state, "down")  # (..., d_ff) twice
    return {
        "down(gate(x) * silu(up(x))): silu applied to up instead of gate": down(gate * F.silu(up)),
        "down(sigmoid(gate(x)) * up(x)): a sigmoid gate (GLU) instead of silu(gate) = gate * sigmoid(gate)":
            down(torch.sigmoid(gate) * up),
        "down(gelu(gate(x)) * up(x)): GELU (that is GEGLU) instead of silu": down(F.gelu(gate) * up),
        "down(silu(gate(x) * up(x))): silu applied after the product instead of to the gate alone":
            down(F.silu(gate * up)),
        "down(gate(x) * up(x)): no activation on the gate": down(gate * up),
        "down(silu(gate(x)) * silu(up(x))): silu applied to both branches": down(F.silu(gate) * F.silu(up)),
        "down(silu(gate(x))): the up branch is missing": down(F.silu(gate)),
        "down(silu(gate(x)) + up(x)): the branches are added, not multiplied": down(F.silu(gate) + up),
    }


# --- sinusoidal_positions: PE[t, 2i] = sin(t / base**(2i/d)), PE[t, 2i+1] = cos(t / base**(2i/d)) ---------------

def _interleaved(angles: torch.Tensor) -> torch.Tensor:
    """(T, n) angles -> (T, 2n): sin in the even columns, cos in the odd ones."""
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)  # (T, n, 2) -> (T, 2n)


def positions_suspects(T: int, d_model: int, base: float = 10000.0) -> dict[str, torch.Tensor]:
    """Outputs of plausible wrong sinusoidal_positions(T, d_model, base) for an even d_model, each (T, d_model)."""
    t = torch.arange(T, dtype=torch.float64)[:, None]  # (T, 1)
    i = torch.arange(d_model // 2, dtype=torch.float64)  # (d_model/2,): the pair index
    angles = t / base ** (2 * i / d_model)  # (T, d_model/2): the right angles, laid out wrongly below
    j = torch.arange(d_model, dtype=torch.float64)  # (d_model,): the column index
    by_column = t / base ** (j / d_model)  # (T, d_model): the exponent uses j, not 2i = 2 * (j // 2)
    suspects = {
        "sin and cos swapped: PE[t, 2i] must be the sin, PE[t, 2i+1] the cos":
            torch.stack([angles.cos(), angles.sin()], dim=-1).flatten(-2),
        "concatenated halves [sin | cos]: the columns must interleave, sin in column 2i and cos in column 2i+1":
            torch.cat([angles.sin(), angles.cos()], dim=-1),
        "concatenated halves [cos | sin] (and sin/cos swapped); the columns must interleave":
            torch.cat([angles.cos(), angles.sin()], dim=-1),
        "positions that start at t = 1: the first row is position t = 0, PE[0] = [0, 1, 0, 1, ...]":
            _interleaved((t + 1) / base ** (2 * i / d_model)),
        "an exponent that uses the column index j (base**(j / d_model)) instead of 2i = 2 * (j // 2): "
        "columns 2i and 2i+1 must share one frequency": torch.where(j % 2 == 0, by_column.sin(), by_column.cos()),
        "an exponent i / d_model instead of 2i / d_model": _interleaved(t / base ** (i / d_model)),
        "t * base**(2i/d_model) (multiplied, not divided)": _interleaved(t * base ** (2 * i / d_model)),
        "every frequency 1: the exponent 2i / d_model rounded to 0 by integer division (//)":
            _interleaved(t.expand(T, d_model // 2)),
    }
    if base != 10000.0:
        suspects[f"base ignored: your encodings use base 10000, not base={base:g}"] = \
            _interleaved(t / 10000.0 ** (2 * i / d_model))
    return suspects
