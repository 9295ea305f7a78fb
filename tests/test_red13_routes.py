"""Second red-team pass on three speed changes (issue 11, point 6): the wire's fast path for dense CPU tensors,
modules left in place on the CPU, and batched grades.csv/results writes. Each test failed before its fix."""

from __future__ import annotations

import pytest
import torch

from autograder import wire


class _Sub(torch.Tensor):
    pass


def _negative_view() -> torch.Tensor:
    """A real tensor with torch's negative bit set: what ``.imag`` of a conjugated complex tensor is."""
    return torch.complex(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])).conj().imag


@pytest.mark.parametrize("kind", ["tensor", "parameter", "subclass"])
def test_a_negative_view_crosses_with_its_values(kind):
    """numpy() refuses a negative view, so the fast path fell back to the general one, which raised too: a right
    answer returned as ``z.conj().imag`` (RoPE written with complex numbers) failed in the worker with
    "Can't call numpy() on Tensor that has negative bit set". Before the fast path it crossed with its values."""
    tensor = _negative_view()
    tensor = {"tensor": tensor, "parameter": torch.nn.Parameter(tensor), "subclass": tensor.as_subclass(_Sub)}[kind]
    assert tensor.is_neg()
    buffers: list[bytes] = []
    decoded = wire.decode(wire.encode(tensor, buffers), buffers)
    assert torch.equal(decoded.tensor, torch.tensor([-3.0, -4.0]))
