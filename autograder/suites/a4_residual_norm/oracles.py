"""The expected values of a4_residual_norm's hidden tests: ``autograder/reference.py`` in float64, cross-checked.

Every value comes from the course's reference model and is checked against PyTorch's own modules given the same
weights: ``F.layer_norm`` (nn.LayerNorm), ``F.rms_norm`` (nn.RMSNorm) and ``nn.TransformerEncoderLayer(
batch_first=True, dropout=0)``. The two must agree to float64 precision; when they do not, the suite is wrong,
not the student, and ``SuiteError`` makes the grader report an internal error instead of a verdict.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from autograder import autodiff, reference
from autograder.checks import tolerance
from autograder.hidden import SuiteError
from autograder.reference import EPS
from autograder.suites.common import PROJECTIONS

Forward = Callable[[dict, torch.Tensor], torch.Tensor]  # (state, x) -> output


class Backward(NamedTuple):
    """An output and the gradients of sum(output * g) with respect to x and to every entry of the state."""

    out: torch.Tensor
    x_grad: torch.Tensor
    param_grads: dict[str, torch.Tensor]


def agreed(ours: torch.Tensor, theirs: torch.Tensor, what: str) -> torch.Tensor:
    """The reference's value ``ours``, once PyTorch's ``theirs`` agrees with it."""
    theirs = theirs.detach().double()
    if ours.shape != theirs.shape or not torch.allclose(ours.detach(), theirs, **tolerance(torch.float64)):
        error = (ours.detach() - theirs).abs().max().item() if ours.shape == theirs.shape else "shape"
        raise SuiteError(f"autograder.reference and PyTorch disagree on {what} (max abs difference {error})")
    return ours.detach()


def forward(ours: Forward, theirs: Forward, state: dict, x: torch.Tensor, what: str) -> torch.Tensor:
    return agreed(ours(state, x), theirs(state, x), what)


def backward(ours: Forward, theirs: Forward, state: dict, x: torch.Tensor, g: torch.Tensor, what: str) -> Backward:
    mine, pytorch = run_backward(ours, state, x, g), run_backward(theirs, state, x, g)
    return Backward(agreed(mine.out, pytorch.out, what), agreed(mine.x_grad, pytorch.x_grad, f"d {what} / d x"),
                    {name: agreed(grad, pytorch.param_grads[name], f"d {what} / d {name}")
                     for name, grad in mine.param_grads.items()})


def run_backward(fn: Forward, state: dict, x: torch.Tensor, g: torch.Tensor) -> Backward:
    leaves = {name: value.detach().double().requires_grad_(True) for name, value in state.items()}
    x = x.detach().double().requires_grad_(True)
    out = fn(leaves, x)
    autodiff.backward(out, g.double())
    return Backward(out, x.grad, {name: leaf.grad for name, leaf in leaves.items()})


# --- LayerNorm and RMSNorm --------------------------------------------------------------------------

def torch_layer_norm(state: dict, x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    weight, bias = (state["weight"].double(), state["bias"].double()) if state else (None, None)
    return F.layer_norm(x.double(), (x.shape[-1],), weight, bias, eps)


def torch_rms_norm(state: dict, x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    return F.rms_norm(x.double(), (x.shape[-1],), state["weight"].double(), eps)


NORMS = {"layer": (reference.layer_norm, torch_layer_norm), "rms": (reference.rms_norm, torch_rms_norm)}


def norm_functions(kind: str, eps: float) -> tuple[Forward, Forward]:
    ours, theirs = NORMS[kind]
    return (lambda s, h: ours(s, h, eps)), (lambda s, h: theirs(s, h, eps))


def norm(kind: str, state: dict, x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """The output of LayerNorm (``kind`` "layer"; state: weight and bias, or empty when not affine) or of RMSNorm
    ("rms"; state: its weight)."""
    return forward(*norm_functions(kind, eps), state, x, f"{kind}_norm")


def norm_backward(kind: str, state: dict, x: torch.Tensor, g: torch.Tensor, eps: float = EPS) -> Backward:
    return backward(*norm_functions(kind, eps), state, x, g, f"{kind}_norm")


# --- TransformerBlock -------------------------------------------------------------------------------

def torch_block(state: dict, x: torch.Tensor, mask=None, *, n_heads: int, norm_first: bool, activation: str = "gelu",
                norm: str = "layer") -> torch.Tensor:
    """nn.TransformerEncoderLayer run with the block's weights: in_proj_weight = cat(q, k, v), linear1 = ffn.up,
    linear2 = ffn.down. Its own norms follow ``bias`` and are LayerNorms, so with bias=False or norm="rms" they
    are replaced by stand-alone nn.LayerNorm or nn.RMSNorm modules. Its boolean masks mean "blocked" where ours
    mean "may attend", so the mask is inverted on the way in."""
    d_model, bias = x.shape[-1], "attn.q_proj.bias" in state
    layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward=state["ffn.up.weight"].shape[0], dropout=0.0,
                                       activation=activation, layer_norm_eps=EPS, batch_first=True,
                                       norm_first=norm_first, bias=bias, dtype=torch.float64)
    if norm == "rms" or not bias:
        make = nn.LayerNorm if norm == "layer" else nn.RMSNorm
        layer.norm1, layer.norm2 = (make(d_model, eps=EPS, dtype=torch.float64) for _ in range(2))
    # A hook (any hook) keeps the layer on its plain PyTorch path: the fused fast path assumes LayerNorm norms
    # with biases, and computes float32 inputs in another order.
    layer.register_forward_pre_hook(lambda module, args: None)
    s = {name: value.double() for name, value in state.items()}
    names = {"self_attn.out_proj": "attn.out_proj", "linear1": "ffn.up", "linear2": "ffn.down", "norm1": "norm1",
             "norm2": "norm2"}
    params = {f"{theirs}.{kind}": s[f"{ours}.{kind}"] for theirs, ours in names.items() for kind in ("weight", "bias")
              if f"{ours}.{kind}" in s}
    for kind in ("weight", "bias") if bias else ("weight",):
        params[f"self_attn.in_proj_{kind}"] = torch.cat([s[f"attn.{p}.{kind}"] for p in PROJECTIONS[:3]])
    kwargs = {}
    if mask is not None:
        kwargs = {"src_mask": ~mask} if mask.dim() == 2 else {"src_key_padding_mask": ~mask[:, 0, 0, :]}
    return functional_call(layer.eval(), params, (x.double(),), kwargs)


def block_functions(mask=None, **options) -> tuple[Forward, Forward]:
    return (lambda s, h: reference.transformer_block(s, h, mask, **options),
            lambda s, h: torch_block(s, h, mask, **options))


def block(state: dict, x: torch.Tensor, mask=None, *, n_heads: int, norm_first: bool, activation: str = "gelu",
          norm: str = "layer") -> torch.Tensor:
    """TransformerBlock's output for ``state`` and ``mask`` (True = may attend)."""
    options = {"n_heads": n_heads, "norm_first": norm_first, "activation": activation, "norm": norm}
    return forward(*block_functions(mask, **options), state, x, "transformer_block")


def block_backward(state: dict, x: torch.Tensor, g: torch.Tensor, *, n_heads: int, norm_first: bool) -> Backward:
    return backward(*block_functions(n_heads=n_heads, norm_first=norm_first), state, x, g, "transformer_block")
