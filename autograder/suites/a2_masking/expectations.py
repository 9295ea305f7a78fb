"""Checks the a2_masking tests share: masks, exact zeros, fully masked rows, finite outputs before gradients,
and a MultiHeadAttention forward that blames the student's attention when that is what raises."""

from __future__ import annotations

import torch

from autograder.checks import as_tensor, expect_finite, expect_no_backward_error, expect_tensor, fail, guess
from autograder.known_bugs.a2_masking import matching_bug
from autograder.session import CallResult, StudentRaised
from autograder.suites.common import dtype_name
from autograder.wire import shorten

NAN_ROW_HINT = ("A row with no visible key gave NaN: its maximum is -inf and -inf - (-inf) is NaN. Shift such rows by "
                "0 instead of their maximum, and divide by 1 where the row sum is 0")
UNIFORM_ROW_HINT = ("A row with no visible key gave uniform weights 1/T_k: that is what a large negative number such "
                    "as -1e9 does. Use -inf, and give rows with no visible key all-zero weights")
# Said only once the forward pass was found finite (expect_finite_output): a guess at the cause of a NaN gradient.
NAN_GRAD_HINT = guess("NaN in the gradient although the forward pass is finite: torch.where(cond, e / total, 0) still "
                      "differentiates e / total at total = 0 (0 / 0), and an additive -inf mask passes that NaN on to "
                      "the scores. Divide by a denominator that is never 0 instead")
DETACHED = guess("Is part of the computation detached (.detach(), .data, no_grad), or computed outside torch?")
BOOL_HINT = "Masks are boolean (True = may attend): build it with a comparison, or convert with .bool()"


def expect_mask(value, want: torch.Tensor, what: str, suspects: dict, hint: str | None = None) -> None:
    """A bool mask equal to ``want``; a wrong one that matches a known bug (known_bugs.a2_masking) names it."""
    got = expect_tensor(value, what, shape=want.shape)
    if got.dtype != torch.bool:
        fail(f"{what} has dtype {dtype_name(got.dtype)}, expected bool", BOOL_HINT)
    if torch.equal(got, want):
        return
    wrong = int((got != want).sum())
    bug = matching_bug(got, suspects)
    if bug:
        fail(f"{what} is wrong at {wrong} of {want.numel()} entries", f"Your result matches {bug}", named=True)
    first = (got != want).nonzero()[0].tolist()
    fail(f"{what} is wrong at {wrong} of {want.numel()} entries, first at {first}: "
         f"got {bool(got[tuple(first)])}, expected {bool(want[tuple(first)])}", hint)


def expect_exact_zero(value, where: torch.Tensor, what: str, hint: str) -> None:
    """``value`` is exactly 0 wherever ``where`` is True."""
    tensor = as_tensor(value, what)
    bad = (tensor != 0) & where.expand(tensor.shape)
    if bad.any():
        first = bad.nonzero()[0].tolist()
        fail(f"{what} is {tensor[tuple(first)].item():.3g} at {first}, where it must be exactly 0 "
             f"({int(bad.sum())} such entries)", hint)


def expect_zero_rows(value, empty_rows: torch.Tensor, what: str, n_keys: int) -> None:
    """Rows flagged in ``empty_rows`` (..., T_q, 1) are all zeros: not NaN, not uniform."""
    tensor = as_tensor(value, what)
    rows = tensor[empty_rows.expand(tensor.shape)]
    if torch.isnan(rows).any():
        fail(f"{what}: a query with no visible key got NaN", NAN_ROW_HINT)
    uniform = torch.full_like(rows, 1 / n_keys, dtype=torch.float64)
    if rows.numel() and torch.allclose(rows.to(torch.float64), uniform, atol=1e-6):
        fail(f"{what}: a query with no visible key got uniform weights 1/{n_keys}", UNIFORM_ROW_HINT)
    if (rows != 0).any():
        fail(f"{what}: a query with no visible key got entries up to {rows.abs().max().item():.3g}, expected all zeros",
             "The convention: no visible key means zero weights and a zero output")


def expect_finite_output(value, what: str, empty_rows: torch.Tensor | None = None) -> torch.Tensor:
    """The forward pass is finite, checked before its gradients: a NaN gradient then says "although the forward pass
    is finite" truthfully, and a NaN forward pass says what it is. ``empty_rows`` (..., T_q, 1): queries with no
    visible key, where a NaN has a known cause."""
    tensor = as_tensor(value, what)
    bad = ~torch.isfinite(tensor)
    in_empty_row = empty_rows is not None and bool((bad & empty_rows.expand(bad.shape)).any())
    return expect_finite(tensor, f"{what} (the forward pass, before any gradient)",
                         NAN_ROW_HINT if in_empty_row else None)


def expect_finite_then_backward(result: CallResult, what: str, outputs: dict,
                                empty_rows: torch.Tensor | None = None) -> None:
    """Before any gradient is judged: each forward output (name -> value) is finite, then the backward pass through
    ``what`` ran."""
    for name, value in outputs.items():
        expect_finite_output(value, name, empty_rows)
    expect_no_backward_error(result, what)


def expect_finite_gradient(value, what: str, hint: str = NAN_GRAD_HINT) -> torch.Tensor:
    """A gradient that reached its input and is finite."""
    if value is None:  # certain, not a guess: no path of the graph reaches that input
        fail(f"{what} is None: no gradient reached that input",
             "Part of the computation is detached (.detach(), .data, torch.no_grad()) or computed outside torch")
    return expect_finite(value, what, hint)


def forward_mha(ctx, module, n_heads: int, *args, **kwargs) -> CallResult:
    """``ctx.forward(module, *args)``, args (x,) or (x, mask). When forward raises, the student's own attention is
    tried first, on per-head inputs with the same mask: if it raises too, the bug is there (or in the masked_softmax
    it calls), not in how forward passes the mask on, and the failure says so."""
    try:
        return ctx.forward(module, *args, **kwargs)
    except StudentRaised as raised:
        if not raised.not_implemented:
            _blame_attention(ctx, args[0], args[1] if len(args) > 1 else None, n_heads)
        raise


def _blame_attention(ctx, x: torch.Tensor, mask, n_heads: int) -> None:
    B, T, d_model = x.shape
    shape = (B, n_heads, T, d_model // n_heads)  # what forward hands the attention: (B, H, T, d_head)
    with ctx.worker_of_its_own("scaled_dot_product_attention") as judge:
        q = judge.randn(*shape, dtype=x.dtype)
        try:
            judge.call("scaled_dot_product_attention", q, q, q, mask)
        except StudentRaised as own:
            if own.not_implemented:
                return
            where = [w.get("function") for w in own.error.get("where") or []]
            culprit = "masked_softmax" if "masked_softmax" in where else "scaled_dot_product_attention"
            message = shorten(((own.error.get("message") or "").strip().splitlines() or [""])[0], 200)
            given = "mask=None" if mask is None else f"a mask of shape {tuple(mask.shape)}"
            hint = ctx.suite.hint_for_error(culprit, own.error)
            fail(f"MultiHeadAttention.forward() raised, and so does your scaled_dot_product_attention on its own "
                 f"(per-head q, k, v of shape {shape}, {given}): {own.error.get('type')}: {message}, "
                 f"in {where[-1] if where else culprit}",
                 f"Fix {culprit} first: the error is there, not in how forward passes the mask on"
                 + (f". {hint}" if hint else ""), named=True)
