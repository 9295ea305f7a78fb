"""Hidden tests of sinusoidal_positions: PE[t, 2i] = sin(t / base**(2i/d)), PE[t, 2i+1] = cos(t / base**(2i/d)).

From Vaswani et al., "Attention Is All You Need" (2017), §3.5: a shift by k positions is one fixed rotation of
every (sin, cos) pair. Expected values: ``reference.sinusoidal_positions`` in float64; known bugs:
``known_bugs.a3_ffn_positions``.
"""

from __future__ import annotations

import torch

from autograder import reference
from autograder.checks import expect_close, expect_tensor, fail, guess
from autograder.hidden import hidden
from autograder.known_bugs.a3_ffn_positions import matching_bug, positions_suspects
from autograder.suites.common import dtype_name, expect_deterministic
from autograder.wire import WireTensor

FORMULA_HINT = "PE[t, 2i] = sin(t / base**(2i/d_model)) and PE[t, 2i+1] = cos(t / base**(2i/d_model)), for t = 0 .. T-1"
HALF_PRECISION = guess("The values are close but outside float32 accuracy: is a position, frequency or angle rounded "
                       "to half precision (float16/bfloat16) somewhere?")

# float32 positions: an angle t * w (w <= 1) rounded in float32 is off by up to about t * 1e-7 rad for every
# float32 formulation we know (pow, exp/log frequencies, division, t * w or t / w; measured <= 9e-8 * t),
# then sin/cos add ~6e-8. The tolerance 1e-5 + 2e-6 * t (t = the last row of a block of rows) leaves
# 20x room, accepts even angles computed as exp(log t - ...), and is tiny next to every real bug:
# wrong formulas are off by more than 0.01 before t = 64, and float16 storage by 2e-4 at t < 64.
ROW_BLOCKS = (16, 64, 256, 1024, 4096)
# A wrong formula can reach angles of 10^4 radians and more (t * base**(2i/d)), which float32 rounds by 10^-3,
# so a result "matches" a known bug within 0.01: wrong layouts and formulas differ from the right one, and from
# each other, by far more.
LOOSE_MATCH = 1e-2


def positions_atol(last_row: int) -> float:
    return 1e-5 + 2e-6 * last_row


def _part(value: WireTensor, index) -> WireTensor:
    """A slice of a returned tensor, still a WireTensor (the checks read a returned value only in that form)."""
    part = value.tensor[index]
    return WireTensor(part, value.dtype, tuple(part.shape), value.type_name, value.requires_grad,
                      value.has_grad_fn, value.device)


def expect_positions_close(got, want: torch.Tensor, what: str, suspects: dict, hint: str) -> None:
    """Compare row blocks [0, 16), [16, 64), ... each with the tolerance of its last position."""
    T = want.shape[0]
    expect_tensor(got, what, shape=want.shape)
    start = 0
    for stop in ROW_BLOCKS:
        stop = min(stop, T)
        if stop <= start:
            break
        rows = slice(start, stop)
        block = _part(got, rows)
        bug = matching_bug(block.tensor, {bug: s[rows] for bug, s in suspects.items()}, atol=LOOSE_MATCH, rtol=0.0)
        named = f"Your result matches {bug}" if bug else None
        if named is None and (block.tensor.to(torch.float64) - want[rows]).abs().max() < LOOSE_MATCH:
            named = HALF_PRECISION
        expect_close(block, want[rows], f"{what}, rows t = {start}..{stop - 1}", atol=positions_atol(stop - 1),
                     rtol=0.0, hint=named or hint)
        start = stop


def _call_positions(ctx, *args, **kwargs):
    return ctx.call("sinusoidal_positions", *args, **kwargs)


@hidden("sinusoidal_positions", points=1, group="shapes")
def test_sinusoid_shapes(ctx):
    """returns a (T, d_model) tensor for several T and even d_model"""
    for T, d_model in [(1, 2), (7, 4), (50, 16), (33, 10), (128, 6)]:
        expect_tensor(_call_positions(ctx, T, d_model), f"sinusoidal_positions({T}, {d_model})", shape=(T, d_model),
                      hint="One row per position t = 0 .. T-1, one column per feature")


@hidden("sinusoidal_positions", points=3, group="numerics")
def test_sinusoid_matches_formula(ctx):
    """matches PE[t, 2i] = sin(t / base**(2i/d)), PE[t, 2i+1] = cos(...) for several sizes and bases"""
    for T, d_model, base, how in [(64, 16, None, "default"), (40, 24, 100.0, "keyword"), (30, 10, 500.0, "positional")]:
        if how == "default":
            what, got, base = f"sinusoidal_positions({T}, {d_model})", _call_positions(ctx, T, d_model), 10000.0
        elif how == "keyword":
            what = f"sinusoidal_positions({T}, {d_model}, base={base:g})"
            got = _call_positions(ctx, T, d_model, base=base)
        else:
            what, got = f"sinusoidal_positions({T}, {d_model}, {base:g})", _call_positions(ctx, T, d_model, base)
        expect_positions_close(got, reference.sinusoidal_positions(T, d_model, base), what,
                               suspects=positions_suspects(T, d_model, base), hint=FORMULA_HINT)


@hidden("sinusoidal_positions", points=1, group="numerics")
def test_sinusoid_accurate_for_long_sequences(ctx):
    """stays within float32 accuracy up to T = 1024 (angles of up to 1023 radians)"""
    T, d_model = 1024, 64
    expect_positions_close(_call_positions(ctx, T, d_model), reference.sinusoidal_positions(T, d_model),
                           f"sinusoidal_positions({T}, {d_model})", suspects=positions_suspects(T, d_model),
                           hint=FORMULA_HINT)


@hidden("sinusoidal_positions", points=2, group="properties")
def test_sinusoid_shift_is_a_linear_map(ctx):
    """PE[t + k] is one fixed linear map of PE[t], the same for every t"""
    T, d_model, k = 128, 16, ctx.randint(1, 9)
    pe = expect_tensor(_call_positions(ctx, T, d_model), f"sinusoidal_positions({T}, {d_model})", shape=(T, d_model))
    pe = pe.to(torch.float64)
    if not torch.isfinite(pe).all():
        fail(f"sinusoidal_positions({T}, {d_model}) contains non-finite values")
    now, later = pe[:-k], pe[k:]  # rows t and t + k, t = 0 .. T-k-1: 128 - k equations per column, 16 unknowns
    M = torch.linalg.lstsq(now, later, driver="gelsd").solution  # the best map with PE[t] @ M ~ PE[t + k]
    residual = (now @ M - later).abs()
    # float32 encodings are within ~3e-5 of exact here (t < 128, see positions_atol); a true shift map fits to
    # that, while encodings whose sin and cos columns do not share frequencies leave residuals above 0.1
    if residual.max() > 1e-3:
        t = int(residual.amax(-1).argmax())
        fail(f"no linear map takes PE[t] to PE[t + {k}] for every t: the best one misses row t + {k} = {t + k} by "
             f"{residual.max().item():.3g}",
             "Each pair of columns (2i, 2i+1) must hold sin and cos of one angle t * w_i, so that a shift by k is a "
             "rotation of every pair by k * w_i")


@hidden("sinusoidal_positions", points=1, group="hygiene")
def test_sinusoid_is_a_plain_float32_tensor(ctx):
    """returns a plain float32 tensor that needs no gradient, the same on every call"""
    what = "sinusoidal_positions(20, 8)"
    first = ctx.call_full("sinusoidal_positions", 20, 8)
    pe = expect_tensor(first.value, what, shape=(20, 8))
    if pe.dtype != torch.float32:
        fail(f"{what} has dtype {dtype_name(pe.dtype)}, expected float32",
             "The encodings have no tensor input to take a dtype from: return float32 (torch's default dtype); "
             "compute in float64 if you like, then convert with .to(torch.float32)")
    if first.value.requires_grad:
        fail(f"{what} requires grad",
             "The encodings are a fixed table, not a parameter: build them without requires_grad")
    expect_deterministic(_call_positions(ctx, 20, 8), first, f"call to {what}", eval_mode=False)
