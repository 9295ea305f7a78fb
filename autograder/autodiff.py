"""Backward passes with a given output gradient, taken as the backward of ``sum(output * gradient)``.

``torch.autograd.backward(out, g)`` and ``torch.autograd.grad(out, x, g)`` give the same gradients (the sum hands
ones to the product, which hands on ``g``), but the first call with an explicit gradient imports
``torch.fx.experimental.symbolic_shapes`` (``_make_grads`` in torch/autograd/__init__.py): about 0.8 s, paid by the
grader and by the worker server before the first test of a cold grade. Used on both sides.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def weighted_sum(outputs: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """``sum((o * g).sum())`` over the pairs with a gradient; shapes must match, as autograd's own check demands."""
    total = None
    for out, g in zip(outputs, grads):
        if g is None:
            continue
        if out.shape != g.shape:  # autograd's words: the product would broadcast instead
            raise RuntimeError(f"Mismatch in shape: grad_output[0] has a shape of {torch.Size(g.shape)} and "
                               f"output[0] has a shape of {torch.Size(out.shape)}.")
        term = (out * g).sum()
        total = term if total is None else total + term
    if total is None:
        raise RuntimeError("no output has a gradient to take the backward pass of")
    return total


def backward(outputs, grads) -> None:
    """``torch.autograd.backward(outputs, grads)``: one tensor and its gradient, or sequences of them."""
    if isinstance(outputs, torch.Tensor):
        outputs, grads = [outputs], [grads]
    weighted_sum(list(outputs), list(grads)).backward()


def grad(outputs, inputs, grads) -> tuple[torch.Tensor, ...]:
    """``torch.autograd.grad(outputs, inputs, grads)``."""
    if isinstance(outputs, torch.Tensor):
        outputs, grads = [outputs], [grads]
    if isinstance(grads, torch.Tensor):
        grads = [grads]
    return torch.autograd.grad(weighted_sum(list(outputs), list(grads)), inputs)
