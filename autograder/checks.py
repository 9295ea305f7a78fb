"""Assertions for hidden tests, run in the grader's process on tensors the worker sent.

Every failure says what was expected, what came back, and where; a test adds the
likely bug as ``hint``, and ``suspects`` (outputs of known wrong implementations)
let a message say "your output matches attention scaled by 1/d_k".
"""

from __future__ import annotations

from typing import NoReturn

import torch

from autograder.session import CheckFailed
from autograder.wire import Foreign, WireTensor, shorten

# Tolerances against a float64 oracle computed from the very same input values.
# float64: a few hundred ulps (2.2e-16 each) of reordering across sums of <= 64 terms.
# float32: sums of <= 64 terms with unit roundoff 6e-8 give relative errors near 4e-6;
#          1e-5 absolute / 1e-4 relative leaves room for legitimate formulations
#          (exp(x - logsumexp), einsum orders) and fails any real bug we know of.
TOLERANCES = {
    torch.float64: {"atol": 1e-10, "rtol": 1e-8},
    torch.float32: {"atol": 1e-5, "rtol": 1e-4},
}


def tolerance(dtype: torch.dtype, scale: float = 1.0) -> dict:
    """Tolerance for ``dtype``; ``scale`` widens it for deeper computations (say, a whole module)."""
    tol = TOLERANCES[dtype]
    return {"atol": tol["atol"] * scale, "rtol": tol["rtol"] * scale}


class Guess(str):
    """A hint that guesses at a cause ("Is part of the computation detached?"). When an earlier failure of the
    same submission explains this one, the grader says that instead (``autograder/feedback.py``)."""


def guess(hint: str) -> Guess:
    return Guess(hint)


def fail(message: str, hint: str | None = None, *, named: bool = False) -> NoReturn:
    raise CheckFailed(f"{message}. {hint}" if hint else message, finding=message,
                      guess=isinstance(hint, Guess) or hint is None, named=named)


# What came back, and what to return instead, for tensors that are not dense, real and readable.
EXOTIC = {
    "complex": ("a complex tensor ({dtype})",
                "Return a real floating-point tensor: nothing here needs complex numbers"),
    "sparse": ("a sparse tensor (layout {layout})", "Return a dense tensor: call .to_dense() on it, or build it dense"),
    "quantized": ("a quantized tensor ({dtype})",
                  "Return a floating-point tensor: call .dequantize(), or do not quantize"),
    "nested": ("a nested tensor (torch.nested)", "Return one regular tensor: torch.stack or pad the pieces"),
    "meta": ("a meta tensor: it has a shape but no values",
             "Compute on the input's device; never create tensors with device='meta'"),
    "_mkldnn": ("an MKL-DNN tensor", "Return a dense tensor: call .to_dense() on it"),
    "unreadable": ("a tensor whose layout or dtype cannot be read", "Return a plain dense torch.Tensor"),
}


def as_tensor(value, what: str) -> torch.Tensor:
    """The values of a returned tensor, or a failure naming what came back instead.

    A plain ``torch.Tensor`` is the grader's own (a slice of a returned value, say) and is taken as is.
    """
    if type(value) is torch.Tensor:
        return value
    if isinstance(value, WireTensor):
        if value.type_name != "torch.Tensor":
            fail(f"{what} is a {value.type_name}, a subclass of torch.Tensor", "Return a plain torch.Tensor")
        exotic = EXOTIC.get(value.layout) or (EXOTIC["sparse"] if value.layout.startswith("sparse") else None)
        if exotic or value.dtype.startswith("complex"):
            message, hint = exotic or EXOTIC["complex"]
            fail(f"{what} is {message.format(dtype=value.dtype, layout=value.layout)}", hint)
        if value.tensor is None:
            fail(f"{what} is a {value.dtype} tensor on device {value.device} whose values cannot be read")
        return value.tensor
    if value is None:
        fail(f"{what} is None", "Did the function forget to `return` its result?")
    kind = value.type_name if isinstance(value, Foreign) else type(value).__name__
    fail(f"{what} is a {kind}, expected a torch.Tensor")


def expect_tensor(value, what: str, *, shape=None, dtype=None, device=None, hint=None) -> torch.Tensor:
    tensor = as_tensor(value, what)
    if shape is not None and tuple(tensor.shape) != tuple(shape):
        fail(f"{what} has shape {_shape(tensor.shape)}, expected {_shape(shape)}", hint)
    if dtype is not None and tensor.dtype != dtype:
        fail(f"{what} has dtype {_dtype(tensor.dtype)}, expected {_dtype(dtype)} (the input's)",
             hint or "Avoid .float()/.double() casts and tensors created without dtype=")
    if device is not None and isinstance(value, WireTensor) and not same_device(value.device, device):
        fail(f"{what} is on device {value.device}, expected {device} (the input's)",
             hint or "Create new tensors with device=x.device; never call .cuda()/.cpu()")
    return tensor


def same_device(a, b) -> bool:
    """``cuda`` and ``cuda:0`` are the same device (the current one, on a one-GPU machine)."""
    a, b = torch.device(a), torch.device(b)
    return a.type == b.type and (a.index or 0) == (b.index or 0)


def expect_pair(value, what: str) -> tuple:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        kind = f"a {type(value).__name__} of length {len(value)}" if isinstance(value, (tuple, list)) else _kind(value)
        fail(f"{what} returned {kind}, expected a pair (out, weights)")
    return tuple(value)


def expect_close(actual, expected: torch.Tensor, what: str, *, atol: float, rtol: float,
                 hint: str | None = None, suspects: dict[str, torch.Tensor] | None = None,
                 equal_nan: bool = False) -> None:
    """``actual`` (a returned value) equals ``expected`` within ``atol + rtol * |expected|``.

    With ``equal_nan``, NaN where the reference has NaN counts as equal; any other non-finite
    reference value fails.
    """
    got = expect_tensor(actual, what, shape=expected.shape)
    got64, want64 = got.detach().to(torch.float64), expected.detach().to(torch.float64)
    # A reference that is itself inf or nan (a student's own earlier output, in a property test)
    # is never matched, except nan by nan when ``equal_nan``: a non-finite output is wrong.
    finite_want = torch.isfinite(want64)
    agree = (got64 == want64) & finite_want
    if equal_nan:
        agree |= torch.isnan(got64) & torch.isnan(want64)
    wrong_special = ~agree & ~finite_want  # the reference is inf or nan there, and the result is not the same
    bad_values = ~torch.isfinite(got64) & finite_want
    for mask, message, default_hint in (
            (bad_values, "non-finite value(s)", guess("Overflow in exp? Subtract the maximum before exponentiating")),
            (wrong_special, "value(s) where the reference is inf or nan", None)):
        if mask.any():
            first = mask.nonzero()[0]
            fail(f"{what} contains {int(mask.sum())} {message}, first {got64[tuple(first)].item()} "
                 f"(expected {want64[tuple(first)].item()}) at {_index(first, expected.shape)}", hint or default_hint)
    diff = (got64 - want64).abs().masked_fill(agree | ~finite_want, 0.0)
    excess = diff - (atol + rtol * want64.abs().masked_fill(~finite_want, 0.0))
    if excess.numel() == 0 or excess.max() <= 0:
        return
    flat = int(excess.reshape(-1).argmax())
    where = torch.unravel_index(torch.tensor(flat), expected.shape)
    matched = _matching_suspect(got64, suspects or {}, atol, rtol)
    message = (f"{what} differs from the reference: max abs error {diff.max().item():.3g}; "
               f"at {_index(where, expected.shape)} "
               f"got {got64[where].item():.6g}, expected {want64[where].item():.6g} (atol={atol:g}, rtol={rtol:g})")
    fail(message, f"Your result matches {matched}" if matched else hint, named=bool(matched))


def expect_equal(actual, expected: torch.Tensor, what: str, hint: str | None = None, equal_nan: bool = False) -> None:
    expect_close(actual, expected, what, atol=0.0, rtol=0.0, hint=hint, equal_nan=equal_nan)


def expect_unchanged(before: torch.Tensor, after, what: str, hint: str | None = None) -> None:
    tensor = as_tensor(after, what)
    if tensor.shape != before.shape or not torch.equal(tensor, before):
        fail(f"{what} was modified in place", hint or "Use out-of-place ops (x = x - m, not x -= m or x.sub_(m))")


def expect_finite(value, what: str, hint: str | None = None) -> torch.Tensor:
    tensor = as_tensor(value, what)
    bad = ~torch.isfinite(tensor)
    if bad.any():
        first = bad.nonzero()[0]
        fail(f"{what} contains {int(bad.sum())} non-finite value(s), first {tensor[tuple(first)].item()} at "
             f"{_index(first, tensor.shape)}",
             hint or guess("Overflow in exp? Subtract the maximum before exponentiating"))
    return tensor


def expect_no_backward_error(result, what: str) -> None:
    """The backward pass through ``what`` ran (see ``CallResult.backward_error``)."""
    err = result.backward_error
    if err:
        msg = shorten((err.get("message") or "").splitlines()[0], 200) if err.get("message") else ""
        fail(f"backpropagating through {what} failed: {err.get('type')}: {msg}",
             guess("Is the output detached from the inputs (.detach(), .data, torch.tensor(...) of a result, numpy)?"))


def _matching_suspect(got: torch.Tensor, suspects: dict[str, torch.Tensor], atol: float, rtol: float) -> str | None:
    for description, tensor in suspects.items():
        want = tensor.detach().to(torch.float64)
        if want.shape == got.shape and torch.allclose(got, want, atol=max(atol, 1e-6), rtol=max(rtol, 1e-5)):
            return description
    return None


def _index(index, shape) -> str:
    values = [int(i) for i in index] if len(shape) else []
    return f"[{', '.join(map(str, values))}]"


def _shape(shape) -> str:
    return f"({', '.join(str(int(s)) for s in shape)})" if len(shape) != 1 else f"({int(shape[0])},)"


def _dtype(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _kind(value) -> str:
    if value is None:
        return "None"
    if isinstance(value, WireTensor):
        return f"a single tensor of shape {_shape(value.shape)}"
    return f"a {getattr(value, 'type_name', type(value).__name__)}"
