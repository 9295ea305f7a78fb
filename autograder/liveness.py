"""The liveness rule: property and hygiene points need a result that depends on the input.

Recorded from the calls the hidden tests make anyway (no extra calls into the student's code).
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass

import torch

from autograder.session import RemoteObject
from autograder.wire import WireTensor


@dataclass(frozen=True, eq=False)
class CallRecord:
    """One call into the student's code, reduced to what tells whether its result depends on its input."""

    during: str  # the exercise whose test made the call
    target: str  # the function called, or the class whose forward ran
    signature: str  # shapes and non-tensor arguments (not dtypes): calls with equal signatures differ in values only
    inputs: str  # digest of the argument values
    outputs: tuple  # the returned values: tensors as float64 (floating) or as they are, numbers, other leaves' names
    filled: bool  # it returned a tensor of more than one element, and each such tensor holds a single value
    varied: bool  # some returned tensor of more than one element holds different values
    constant: tuple | None  # the one value every returned number and tensor element equals, when there is one
    passthrough: bool = False  # every returned tensor is one of the call's input tensors, unchanged


class CallLog:
    """The calls of one submission's hidden tests into its code, recorded on the way (no extra calls).

    Property and hygiene checks (permutation-equivariance, "leaves its input unmodified", "deterministic") also
    hold for a function that ignores its input; ``why_not_live`` says when the calls show that it did.
    """

    def __init__(self):
        self.records: list[CallRecord] = []
        self.constructed: dict[int, str] = {}  # module handle -> the constructor (exercise) that built it

    def record(self, during: str, target: str, args, kwargs, value) -> None:
        readable = list(_leaves(value))
        values = [v for v in readable if isinstance(v, (WireTensor, torch.Tensor, int, float))]
        if not values or any(isinstance(v, WireTensor) and v.tensor is None for v in values):
            return  # a module, a handle, None, or values the grader cannot read: no evidence either way
        inputs = list(_leaves((args, kwargs)))
        tensors = [t for t in map(_plain, values) if isinstance(t, torch.Tensor) and t.numel() > 1]
        varied = any(_single_value(t) is None for t in tensors)
        self.records.append(CallRecord(during, target, _signature(inputs), _digest(inputs), _values(readable),
                                       filled=bool(tensors) and not varied, varied=varied,
                                       constant=_constant(readable),
                                       passthrough=bool(tensors) and all(_is_an_input(t, inputs) for t in tensors)))

    def why_not_live(self, exercise: str) -> str | None:
        """None when the exercise's own tests saw a result that depends on its input; else what they saw."""
        own = [r for r in self.records if r.during == exercise and r.target == exercise]
        if not own:
            return "never returned a value the grader could read"
        constants = {r.constant for r in own}
        constant = constants.pop() if len(constants) == 1 else None
        if constant is not None:
            return f"returned {_describe_constant(constant)} whatever its input"
        if any(r.filled for r in own) and not any(r.varied for r in own):
            return "returned tensors filled with a single value whatever its input"
        if all(r.passthrough for r in own):
            return "returned its input unchanged"
        by_signature: dict[str, list[CallRecord]] = defaultdict(list)
        for r in own:
            by_signature[r.signature].append(r)
        compared = [calls for calls in by_signature.values() if len({r.inputs for r in calls}) > 1]
        if compared and all(all(_same_values(calls[0].outputs, r.outputs) for r in calls) for calls in compared):
            return "returned the same values whatever its input"
        return None


def _is_an_input(tensor: torch.Tensor, inputs) -> bool:
    """``tensor`` equals one of the call's input tensors (a function that hands its input back, unchanged)."""
    return any(isinstance(t, torch.Tensor) and t.shape == tensor.shape and t.dtype == tensor.dtype
               and torch.equal(t, tensor) for t in map(_plain, inputs))


def _leaves(value):
    """The tensors and numbers inside nested tuples, lists and dicts; handles and other objects are skipped."""
    if isinstance(value, (tuple, list)):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            yield from _leaves(value[key])
    elif isinstance(value, (WireTensor, torch.Tensor, bool, int, float, str)) or value is None:
        yield value
    elif not isinstance(value, RemoteObject):
        yield type(value).__name__


def _plain(value):
    return value.tensor if isinstance(value, WireTensor) else value


def _signature(leaves) -> str:
    """Shapes and non-tensor arguments, not dtypes: a float32 and a float64 input of one shape are compared too."""
    parts = []
    for leaf in map(_plain, leaves):
        parts.append(f"tensor{tuple(leaf.shape)}" if isinstance(leaf, torch.Tensor) else repr(leaf))
    return "|".join(parts)


def _digest(leaves) -> str:
    """Values as float32 (a float64 result equals its float32 twin here), with shapes; other leaves by repr."""
    h = hashlib.sha256()
    for leaf in map(_plain, leaves):
        if isinstance(leaf, torch.Tensor):
            t = leaf.detach().cpu()
            t = (t.to(torch.float32) if t.is_floating_point() else t).contiguous()
            h.update(f"{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(repr(leaf).encode())
        h.update(b"|")
    return h.hexdigest()


def _values(leaves) -> tuple:
    """What a call returned, kept for comparison: floating tensors as float64 on the CPU, numbers as they are."""
    kept = []
    for leaf in map(_plain, leaves):
        if isinstance(leaf, torch.Tensor):
            leaf = leaf.detach().cpu()
            kept.append(leaf.to(torch.float64) if leaf.is_floating_point() else leaf)
        else:
            kept.append(leaf)
    return tuple(kept)


def _same_values(a: tuple, b: tuple) -> bool:
    """Equal up to float32 rounding: a result computed in float32 for one input and float64 for another,
    whatever the input, is the same result."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            if x.shape != y.shape or x.dtype != y.dtype:
                return False
            if not (torch.equal(x, y) if not x.is_floating_point() else
                    torch.allclose(x, y, rtol=1e-5, atol=1e-6, equal_nan=True)):
                return False
        elif isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            return False
        elif x != y and not (isinstance(x, float) and isinstance(y, float)
                             and math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-6)):
            return False
    return True


def _single_value(t: torch.Tensor):
    """The value every element of ``t`` equals (NaN counts as equal to NaN), or None."""
    flat = t.detach().reshape(-1).cpu()
    if flat.is_floating_point() and bool(flat.isnan().all()):
        return ("number", "nan")
    if not bool((flat == flat[0]).all()):
        return None
    first = flat[0].item()
    if isinstance(first, bool):
        return ("bool", first)
    return ("number", first if isinstance(first, complex) else float(first))


def _constant(leaves) -> tuple | None:
    """The single value all returned numbers and tensor elements share (as a (kind, value) pair), or None."""
    seen = set()
    for leaf in map(_plain, leaves):
        if isinstance(leaf, torch.Tensor):
            if leaf.numel() == 0:
                continue
            value = _single_value(leaf)
        elif isinstance(leaf, bool):
            value = ("bool", leaf)
        elif isinstance(leaf, (int, float)):
            value = ("number", float(leaf))
        else:
            value = None
        if value is None:
            return None
        seen.add(value)
        if len(seen) > 1:
            return None
    return seen.pop() if len(seen) == 1 else None


def _describe_constant(constant: tuple) -> str:
    kind, value = constant
    if kind == "bool":
        return f"all {value}"
    if value == 0:
        return "all zeros"
    return f"the constant {value:g}" if isinstance(value, float) else f"the constant {value}"
