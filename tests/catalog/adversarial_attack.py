"""Red-team routes against the grader (issue 8): a student, or a code assistant, trying to get credit for
forbidden or wrong work on a1, a2 and a4 after the fixes of this session (allowlist policy over the whole
program, run-time trace as a second signal, liveness rule, release cells, worker isolation).

Each case replaces some cells of a solution notebook and states the CORRECT outcome:
- forbidden work (a built-in doing the exercise's job, or anything outside ``policy.describe``) -> every test
  of the attacked exercise scores 0 and says why ("forbidden use", "needs review" or "at run time");
- wrong work -> no credit for what it fakes;
- a route the grader already handles keeps that outcome.

``weakness`` marks a route that currently SUCCEEDS (credit it should not get): its test is a strict xfail whose
reason is the diagnosis. Graded by tests/test_adversarial_attack.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from autograder.runner import GradeReport
from tests.catalog import a5_transformer_lm as a5
from tests.variants import REPO, Cheat, expect_full_marks, failures, tests_of

CAUGHT = ("forbidden use", "needs review", "at run time")


@dataclass
class AttackCase(Cheat):
    assignment: str = "a1_attention"
    options: dict = field(default_factory=dict)  # passed to grade()
    weakness: str | None = None                  # the diagnosis of a route that currently gets credit
    planted: dict = field(default_factory=dict)  # files written next to the notebook: name -> text
    direct: bool = False  # graded by `python -m pytest autograder/suites/<a> --submission NB`, not by grade()


# --- outcomes ---------------------------------------------------------------------------------------

def expect_caught(report: GradeReport, exercise: str) -> None:
    """Every test of ``exercise`` scores 0 and says it was caught: by the scan (forbidden / needs review) or by
    the run-time trace."""
    graded = tests_of(report, exercise)
    assert graded, f"no hidden test for {exercise} in the report"
    credited = [t.name for t in graded if t.score > 0]
    assert not credited, f"{exercise} got credit from {credited} for forbidden work; all results:\n{failures(report)}"
    for t in graded:
        assert any(p in t.output.lower() for p in CAUGHT), f"{t.name} should say why it scores 0, said {t.output!r}"


def caught(exercise: str, *untouched: str):
    """``exercise`` scores 0 for its forbidden work; ``untouched`` exercises (which do not reach it) keep full marks."""
    def check(report: GradeReport) -> None:
        expect_caught(report, exercise)
        expect_full_marks(report, *untouched)
    return check


def caught_everywhere(exercise: str, *others: str):
    """Load-time code (module level, a class body, a default value, a student's decorator) runs when the cell runs,
    for every exercise: ``exercise`` scores 0 for its forbidden work and so does every one of ``others``."""
    def check(report: GradeReport) -> None:
        for each in (exercise, *others):
            expect_caught(report, each)
    return check


def full_marks(*exercises: str):
    """A route that is harmless or handled: the named exercises keep (deserved) full marks and nothing is flagged."""
    def check(report: GradeReport) -> None:
        expect_full_marks(report, *exercises)
        assert not report.review, report.review
    return check


def unparseable_cell(exercise: str, *untouched: str):
    """The grader reports a cell it cannot parse (no exception): what the cell defines earns nothing, with a
    diagnostic; the other exercises keep their points."""
    def check(report: GradeReport) -> None:
        assert report.diagnostics, "a cell the grader cannot parse should get a diagnostic"
        assert not any(t.score for t in tests_of(report, exercise)), failures(report)
        expect_full_marks(report, *untouched)
    return check


def at_most(exercise: str, points: float):
    """Wrong work earns at most ``points`` (what the shapes group of the exercise is worth)."""
    def check(report: GradeReport) -> None:
        earned = sum(t.score for t in tests_of(report, exercise))
        assert earned <= points, f"{exercise} earned {earned:g} > {points:g} for wrong work:\n{failures(report)}"
    return check


def no_credit(exercise: str, *untouched: str):
    """The grader finishes and reports; ``exercise`` earns nothing; ``untouched`` exercises keep full marks."""
    def check(report: GradeReport) -> None:
        credited = [t.name for t in tests_of(report, exercise) if t.score > 0]
        assert tests_of(report, exercise), f"no hidden test for {exercise} in the report"
        assert not credited, f"{exercise} got credit from {credited}:\n{failures(report)}"
        expect_full_marks(report, *untouched)
    return check


def all_of(*checks):
    def check(report: GradeReport) -> None:
        for each in checks:
            each(report)
    return check


def reads_nothing(exercise: str, *paths: str):
    """Files outside the worker's view stay unread: the exercise's message names each path with an error only."""
    def check(report: GradeReport) -> None:
        no_credit(exercise)(report)
        for t in tests_of(report, exercise):
            for path in paths:
                got = re.search(re.escape(path) + r":(\S+)", t.output)
                assert got and got.group(1).endswith("Error"), f"{t.name} read {path}: {t.output[:400]!r}"
    return check


A1_SIBLINGS = ("split_heads", "merge_heads")
A4_LN_ONLY = ("RMSNorm",)

# --- route 1: code that runs at load but is in no exercise's closure --------------------------------
# The scan files a class or def under its name and judges it only when some exercise reads that name. A class
# BODY, a def's DEFAULT VALUES and its DECORATORS run when the cell runs, for every exercise, whoever reads them.

CLASS_BODY_PATCH = '''\
class _Boot:
    """never referenced: its body runs when the cell runs"""
    import torch._decomp.decompositions as _d
    torch.Tensor.nansum = lambda self, dim=-1, _d=_d: _d._softmax(self, dim, False)


def softmax(x, dim=-1):
    return x.nansum(dim)
'''

DEFAULT_VALUE_PATCH = '''\
def _defaults(_=setattr(torch.Tensor, "nansum", lambda self, dim=-1: __import__("torch._decomp.decompositions",
              fromlist=["_softmax"])._softmax(self, dim, False))):
    """never called: its default value is computed when the cell runs"""


def softmax(x, dim=-1):
    return x.nansum(dim)
'''

# a4: the same in a class body, with the built-in RMS norm itself; the run-time trace (the second signal)
# still sees F.rms_norm, so this one scores 0, but only thanks to the trace.
RMSNORM_CLASS_BODY_PATCH = '''\
class _Setup:
    """never referenced: its body runs when the cell runs"""
    torch.Tensor.nanmean = lambda self, w, eps, F=F: F.rms_norm(self, (self.shape[-1],), w, eps)


class RMSNorm(nn.Module):
    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x):
        return x.nanmean(self.weight, self.eps)
'''

# A plain binding (no call) is filed under its name, unjudged unless read; a subscript still runs code.
CLASS_GETITEM_ON_PLAIN_BINDING = '''\
class _Kernel:
    def __class_getitem__(cls, key):
        import torch._decomp.decompositions as d
        torch.Tensor.nansum = lambda self, dim=-1: d._softmax(self, dim, False)
        return cls


_kernel_ready = _Kernel[0]  # a plain name binding: no call, so the scan files it under its name


def softmax(x, dim=-1):
    return x.nansum(dim)
'''

# --- route 2: functions reached through a container, not by name ----------------------------------
REGISTRY_DECORATOR = '''\
_kernels = {}


def _register(fn):
    _kernels[fn.__name__.strip("_")] = fn
    return fn


@_register
def _normalise(x, dim):
    with torch._C.DisableTorchFunction():
        return F.softmax(x, dim)


def softmax(x, dim=-1):
    return _kernels["normalise"](x, dim)
'''

# --- route 3: the student's own attribute names exempt anything ------------------------------------
# `def _names(_C, __dict__, ...)` makes those names "the student's attributes" (parameters count), so on a base
# that is not an import (an alias `_t = torch`, `type(x)`) they are neither torch API nor private reads.

SOFTMAX_BY_OWN_NAMES = '''\
def _names(_C, __dict__, DisableTorchFunction, TensorBase):
    """never called: its parameter names make these attribute names the student's own"""


_t = torch


def softmax(x, dim=-1):
    with _t._C.DisableTorchFunction():
        return _t._C.TensorBase.__dict__["softmax"](x, dim)
'''

CAUSAL_MASK_BY_OWN_NAMES = '''\
def _names(Transformer):
    """never called: its parameter name makes `Transformer` an attribute name of the student's own"""


_nn = nn


def causal_mask(T_q, T_k=None, device=None):
    T_k = T_q if T_k is None else T_k
    square = _nn.Transformer.generate_square_subsequent_mask(T_k, device=device) == 0
    return square[T_k - T_q:]
'''

LAYERNORM_BY_OWN_NAMES = '''\
def _names(_C, __dict__, DisableTorchFunction):
    """never called: its parameter names make these attribute names the student's own"""


_t = torch


class LayerNorm(nn.Module):
    def __init__(self, d_model, eps=1e-5, elementwise_affine=True):
        super().__init__()
        self.eps = eps
        self.d_model = d_model
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(d_model))
            self.bias = nn.Parameter(torch.zeros(d_model))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):
        with _t._C.DisableTorchFunction():
            return _t.__dict__["layer" "_norm"](x, (self.d_model,), self.weight, self.bias, self.eps)
'''

# --- routes the grader handles ------------------------------------------------------------------------
# A locked test cell edited to define the exercise with F.softmax: the release's cell is graded instead.
EDITED_TEST_CELL = '''\
def softmax(x, dim=-1):
    return F.softmax(x, dim)
'''
# Nearly uniform weights: the result barely depends on x, so the liveness rule withholds property points.
NEARLY_CONSTANT_SOFTMAX = '''\
def softmax(x, dim=-1):
    e = (x * 1e-6).exp()  # barely depends on x: nearly uniform weights
    return e / e.sum(dim=dim, keepdim=True)
'''


# --- route 4: getattr under another name, from allowed modules or frames ---------------------------
# tqdm (an allowed module) ships a wrapper whose wrapper_getattr IS getattr; a generator's frame hands out the
# builtins dict. Neither name is on the scan's short list of dynamic lookups, so string lookups pass unseen.
TQDM_WRAPPER_GETATTR = '''\
import tqdm


def _get(obj, name):
    return tqdm.utils.ObjectWrapper(obj).wrapper_getattr(name)


def softmax(x, dim=-1):
    with _get(_get(torch, "_C"), "DisableTorchFunction")():
        return _get(F, "soft" + "max")(x, dim)
'''

GENERATOR_FRAME_BUILTINS = '''\
_lookup = (_ for _ in ()).gi_frame.f_builtins["get" "attr"]  # the builtin getattr, never named


def softmax(x, dim=-1):
    with _lookup(_lookup(torch, "_C"), "DisableTorchFunction")():
        return _lookup(F, "soft" "max")(x, dim)
'''

# --- route 5: a parameter named like a built-in -------------------------------------------------------
# a2's attention may not use a softmax (it has masked_softmax), but its trace does not watch one; a parameter
# named `softmax` makes `scores.softmax(-1)` look like the student's own method.
A2_PARAMETER_NAMED_SOFTMAX = '''\
def scaled_dot_product_attention(q, k, v, mask=None, softmax=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(-1).nan_to_num(0.0)
    return weights @ v, weights
'''

# --- route 6: the grader's own parser -------------------------------------------------------------------
# 3000 nested unary minuses: ast.parse raises RecursionError (not a SyntaxError) in the release check and the scan.
DEEP_EXPRESSION = '''\
def softmax(x, dim=-1):
    x = x - x.amax(dim=dim, keepdim=True)
    e = x.exp()
    return e / e.sum(dim=dim, keepdim=True)


_deep = ''' + "-" * 3000 + '''1
'''
# --- wrong work -------------------------------------------------------------------------------------------
HASH_SOFTMAX = '''\
def softmax(x, dim=-1):
    r = (x * 7919.0).remainder(1.0) + 0.01  # a hash of x: depends on x, means nothing
    return r / r.sum(dim=dim, keepdim=True)
'''
# --- routes the grader handles (kept so that they stay handled) --------------------------------------
DISTRIBUTIONS_SOFTMAX = '''\
def softmax(x, dim=-1):
    return torch.distributions.Categorical(logits=x.movedim(dim, -1)).probs.movedim(-1, dim)
'''
MATCH_CLASS_PATTERN = '''\
def softmax(x, dim=-1):
    match x:
        case torch.Tensor(softmax=kernel):
            return kernel(dim)
'''
TRACEBACK_GLOBALS = '''\
def softmax(x, dim=-1):
    try:
        raise RuntimeError
    except RuntimeError as e:
        found = e.__traceback__.tb_frame.f_globals["F"]
    return found.__dict__["soft" "max"](x, dim)
'''


# --- route 7: an import name rebound to torch -------------------------------------------------------------
# The scan resolves a name to a module by the imports alone: `math = torch` (or a parameter `math=torch`) makes
# every `math.<x>` look like the math module's, which is not torch API and not judged.
SHADOWED_MATH_MODULE = '''\
math = torch  # the name the scan believes is the math module


def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / q.size(-1) ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = math.softmax(scores, -1).nan_to_num(0.0)
    return weights @ v, weights
'''
SHADOWED_MATH_PARAMETER = '''\
def causal_mask(T_q, T_k=None, device=None, math=torch):
    T_k = T_q if T_k is None else T_k
    square = math.nn.Transformer.generate_square_subsequent_mask(T_k, device=device) == 0
    return square[T_k - T_q:]
'''

# A function live on tiny inputs only: the liveness rule is judged per test, so the tests that saw the constant
# branch get nothing (handled).
LIVE_ON_TINY_INPUTS_ONLY = '''\
def softmax(x, dim=-1):
    if x.dim() == 1 or x.shape[dim] <= 2:  # live only on tiny inputs
        e = (x - x.amax(dim=dim, keepdim=True)).exp()
        return e / e.sum(dim=dim, keepdim=True)
    return x * 0 + 1.0 / x.shape[dim]  # uniform weights: ignores x
'''


# --- a4 ----------------------------------------------------------------------------------------------------
RMSNORM_INIT = '''\
class RMSNorm(nn.Module):
    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x):
'''
# getattr from a generator's frame, the trace switched off: the built-in RMS norm, no finding.
A4_RMSNORM_BY_FRAME_GETATTR = ('''\
_lookup = (_ for _ in ()).gi_frame.f_builtins["get" "attr"]


''' + RMSNORM_INIT + '''\
        with _lookup(_lookup(torch, "_C"), "DisableTorchFunction")():
            return _lookup(F, "rms" "_norm")(x, (x.shape[-1],), self.weight, self.eps)
''')
# The built-in layer norm through a parameter `math=torch`: the scan misses it; the run-time trace (second signal)
# fails the tests that run forward(), but a test that never calls forward keeps its points.
A4_LAYERNORM_THROUGH_SHADOWED_MATH = LAYERNORM_BY_OWN_NAMES.replace(
    "    def forward(self, x):\n        with _t._C.DisableTorchFunction():\n"
    "            return _t.__dict__[\"layer\" \"_norm\"]",
    "    def forward(self, x, math=torch):\n        return math.layer_norm")
assert "math=torch" in A4_LAYERNORM_THROUGH_SHADOWED_MATH, "the replacement above no longer matches its source"


# --- route 8: another release's given code, pasted --------------------------------------------------------
# a2's release ships a1's softmax, split_heads and merge_heads as given code; pasted into a1's exercise cells (under
# a1's grade_ids, in a1's notebook) it is not "another assignment's notebook" and not a read-only cell.
A2_GIVEN_CODE = '''\
def softmax(x, dim=-1):
    """Numerically stable softmax of `x` along `dim` (Assignment 1)."""
    x = x - x.amax(dim=dim, keepdim=True)  # the largest entry of each slice becomes 0, so exp() <= 1
    e = x.exp()
    return e / e.sum(dim=dim, keepdim=True)


def split_heads(x, n_heads):
    """(B, T, d_model) -> (B, H, T, d_head); head h gets features h*d_head:(h+1)*d_head (Assignment 1)."""
    B, T, d_model = x.shape
    # (B, T, d_model) -> (B, T, H, d_head) -> (B, H, T, d_head)
    return x.reshape(B, T, n_heads, d_model // n_heads).transpose(1, 2)


def merge_heads(x):
    """(B, H, T, d_head) -> (B, T, H * d_head), the inverse of split_heads (Assignment 1)."""
    B, H, T, d_head = x.shape
    # (B, H, T, d_head) -> (B, T, H, d_head) -> (B, T, H * d_head)
    return x.transpose(1, 2).reshape(B, T, H * d_head)
'''
PASTED_GIVEN = ("a known limit of any grader, kept as a strict xfail: a later release's given cell (a2's given_a1 "
                "holds a1's solutions) pasted into a1's exercise cells scores full marks, and it cannot be told from "
                "written code, because that given code IS the earlier assignment's reference solution (comparing "
                "with it would zero the reference solution too). The remedy is the release schedule: publish a "
                "release only after the deadlines of the assignments whose solutions it gives (README)")

# --- route 9: results that would hurt the grader (handled) ------------------------------------------------
HUGE_EXPANDED_VIEW = '''\
def split_heads(x, n_heads):
    return x.new_zeros(1).expand(2 ** 20, 2 ** 20)  # a 4 TiB view of one element
'''
DEEPLY_NESTED_RESULT = '''\
def split_heads(x, n_heads):
    deep = []
    for _ in range(200000):
        deep = [deep]
    return deep
'''


# --- route 10: reading the hidden suite from the worker (handled by the sandbox) ---------------------------
HIDDEN_SUITE_PATHS = (str(REPO / "autograder" / "suites" / "a1_attention" / "test_softmax.py"),
                      "/work/main/autograder/suites/a1_attention/test_softmax.py")
assert Path(HIDDEN_SUITE_PATHS[0]).exists(), "the route must aim at a hidden-suite file that exists"
READ_HIDDEN_SUITE = '''\
_b = (_ for _ in ()).gi_frame.f_builtins


def split_heads(x, n_heads):
    found = []
    for path in PATHS:
        try:
            with _b["open"](path) as f:
                found.append(path + ":" + f.read(60))
        except Exception as e:
            found.append(path + ":" + type(e).__name__)
    raise RuntimeError(" | ".join(found))
'''.replace("PATHS", repr(HIDDEN_SUITE_PATHS))


# a4: normalisation layers that do not normalise. The identity depends on its input, so the liveness rule
# lets the hygiene test pay: 3/11 for LayerNorm (shapes group: 2) and 2/9 for RMSNorm (shapes group: 1).
A4_IDENTITY_NORMS = {"LayerNorm": '''\
class LayerNorm(nn.Module):
    def __init__(self, d_model, eps=1e-5, elementwise_affine=True):
        super().__init__()
        self.eps = eps
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(d_model))
            self.bias = nn.Parameter(torch.zeros(d_model))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):
        return x.clone()  # does nothing: the identity
''', "RMSNorm": '''\
class RMSNorm(nn.Module):
    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x):
        return x * self.weight  # no normalisation at all
'''}
# --- aliasing routes the scan already sees (kept so that they stay seen): a1 softmax, each caught ------------
HANDLED_SOFTMAX_ROUTES = {
    "default_argument_alias": "def softmax(x, dim=-1, _k=F.softmax):\n    return _k(x, dim)\n",
    "class_attribute_alias": ("class _K:\n    run = staticmethod(torch.softmax)\n\n\n"
                              "def softmax(x, dim=-1):\n    return _K.run(x, dim)\n"),
    "functools_partial": ("import functools\n\n\ndef softmax(x, dim=-1):\n"
                          "    return functools.partial(torch.nn.functional.softmax, dim=dim)(x)\n"),
    "walrus_in_a_comprehension": ("def softmax(x, dim=-1):\n"
                                  "    return [(k := F.softmax) for _ in (0,)][0](x, dim)\n"),
    "f_string_equals": "def softmax(x, dim=-1):\n    s = f\"{x.softmax(dim)=}\"\n    return x.softmax(dim)\n",
    "through_nn_modules_activation": ("def softmax(x, dim=-1):\n"
                                      "    return torch.nn.modules.activation.F.softmax(x, dim)\n"),
    "tensor_class_dict": "def softmax(x, dim=-1):\n    return torch.Tensor.__dict__[\"softmax\"](x, dim)\n",
    "torch_special_imported_as": ("from torch import special as sp\n\n\n"
                                  "def softmax(x, dim=-1):\n    return sp.softmax(x, dim)\n"),
    "map_over_modules": "def softmax(x, dim=-1):\n    (k,) = map(lambda m: m.softmax, [F])\n    return k(x, dim)\n",
    "super_of_a_tensor_subclass": ("class _P(torch.Tensor):\n    pass\n\n\n"
                                   "def softmax(x, dim=-1):\n    return super(_P, x.as_subclass(_P)).softmax(dim)\n"),
    "builtins_getattr": "def softmax(x, dim=-1):\n    return __builtins__[\"getattr\"](F, \"softmax\")(x, dim)\n",
    # softmax as the Jacobian of logsumexp: torch.autograd is outside softmax's allowlist
    "jacobian_of_logsumexp": ("def softmax(x, dim=-1):\n    return torch.autograd.functional.jacobian(\n"
                              "        lambda t: t.logsumexp(dim, keepdim=True), x).sum(0)\n"),
}

# Verdict changed with the load-time rule: `run = staticmethod(torch.softmax)` is a call in a class body, which runs
# when the cell runs, so every exercise is judged by it (split_heads and merge_heads score 0 too).
RUN_AT_LOAD = {"class_attribute_alias"}

# --- route 11: names the scan never sees written (red team, second pass) -----------------------------------
# A star import of an allowed module binds every public name without writing one; a class pattern's positional
# sub-pattern reads the attribute named in __match_args__ (a string); cross_entropy computes log_softmax in C++
# under a name the trace does not watch; a metaclass's __instancecheck__ makes any tensor match a student class.
# dataclasses.asdict getattr()s each field of a dataclass by name: a field named softmax on a torch.Tensor subclass is
# Tensor.softmax, and a __torch_function__ of the student's runs with the trace's mode popped.
STAR_IMPORT_LOG_SOFTMAX = """\
from torch.nn.functional import *


def softmax(x, dim=-1):
    return log_softmax(x, dim).exp()
"""
STAR_IMPORT_CROSS_ENTROPY = """\
from torch.nn.functional import *


def softmax(x, dim=-1):
    z = x.movedim(dim, -1)
    flat = z.reshape(-1, z.shape[-1])
    cols = [(-cross_entropy(flat, flat.new_full((flat.shape[0],), i, dtype=torch.long), reduction="none")).exp()
            for i in range(flat.shape[1])]
    return torch.stack(cols, -1).reshape(z.shape).movedim(-1, dim)
"""
MATCH_ARGS_METACLASS = """\
class _Any(type):
    def __instancecheck__(cls, obj):
        return True


class _Kernel(metaclass=_Any):
    __match_args__ = ("soft" "max",)


def softmax(x, dim=-1):
    match x:
        case _Kernel(kernel):
            return kernel(dim)
"""
DATACLASS_ASDICT_UNDER_TORCH_FUNCTION = """\
import dataclasses


@dataclasses.dataclass(init=False, eq=False, repr=False)
class _Row(torch.Tensor):
    soft""" + """max: ...  # a field (annotated `...`: dataclasses resolves no string): \
asdict getattr()s and deep-copies it

    def __init__(self, x):
        self.data = x

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if len(args) == 2 and callable(args[1]):  # split(kernel, dim=...): call the kernel, the trace's mode is off
            return args[1](**kwargs)
        return super().__torch_function__(func, types, args, kwargs or {})


def softmax(x, dim=-1):
    kernel = dataclasses.asdict(_Row(x))["soft" "max"]
    out = _Row(x).split(kernel, dim=dim)
    return torch.tensor(out.tolist(), dtype=x.dtype, device=x.device)  # a plain tensor again
"""
# A star import needs review where it stands: module-level code, so every exercise pays.
STAR_IMPORTS = {"star_import_log_softmax", "star_import_cross_entropy_untraced"}
# match class patterns always need review, so __match_args__ and the metaclass change nothing (handled).
# Closed after the second pass: a student class that subclasses torch.Tensor (or defines __torch_function__)
# needs review, and dataclasses.asdict/astuple/replace left the allowlist (they read attributes by field name).
SECOND_PASS: dict[str, str] = {}
SECOND_PASS_ROUTES = {
    "star_import_log_softmax": STAR_IMPORT_LOG_SOFTMAX,
    "star_import_cross_entropy_untraced": STAR_IMPORT_CROSS_ENTROPY,
    "match_args_on_a_metaclass_instancecheck": MATCH_ARGS_METACLASS,
    "dataclass_asdict_under_torch_function": DATACLASS_ASDICT_UNDER_TORCH_FUNCTION,
    # the same lookup called directly: the scan misses it, the run-time trace sees Tensor.softmax (handled)
    "dataclass_asdict_traced": DATACLASS_ASDICT_UNDER_TORCH_FUNCTION.replace(
        "    out = _Row(x).split(kernel, dim=dim)\n", "    out = kernel(dim=dim)\n"),
}
assert "out = kernel(dim=dim)" in SECOND_PASS_ROUTES["dataclass_asdict_traced"], (
    "the replacement above no longer matches"
)

# --- route 12 (pytest suites): generate's cropping check skipped by a TransformerLM that will not build ----------
# a5's generate_crops_to_max_len checks the crop on the given BigramLM (whose prediction depends on the last token
# only, so a crop one token short is invisible there) and then on the student's TransformerLM, built in generate's
# own worker; when building it raises CheckFailed, that half is skipped and the test passes. A TransformerLM that
# refuses to build after generate ran (a flag generate sets, in the same worker), or only for the test's config
# (vocab 9, max_len 5, which TransformerLM's own tests never use), loses nothing in TransformerLM and hides a wrong
# crop: 34/34 for the catalog's mutant generate_crops_one_token_short.
CROP_ONE_SHORT = a5.gen("context = tokens[:, -model.max_len:]", "context = tokens[:, -(model.max_len - 1):]")
LM_REFUSES_AFTER_GENERATE = "_RAN = []\n\n\n" + a5.lm_init(
    "        super().__init__()\n",
    "        super().__init__()\n        if _RAN:\n            raise RuntimeError('busy')\n")
GENERATE_SETS_THE_FLAG = CROP_ONE_SHORT.replace("    tokens = prompt\n", "    tokens = prompt\n    _RAN.append(1)\n", 1)
assert "_RAN.append" in GENERATE_SETS_THE_FLAG, "the replacement above no longer matches"
LM_REFUSES_THE_CROP_CONFIG = a5.lm_init(
    "        super().__init__()\n",
    "        super().__init__()\n        if (vocab_size, max_len) == (9, 5):\n            raise RuntimeError('busy')\n")
# The same half is skipped when generate raises an error whose message says "has no attribute 'max_len'": the
# message is the student's, so generate itself can say it when handed a TransformerLM (and crop wrongly otherwise).
GENERATE_CLAIMS_NO_MAX_LEN = a5.gen(
    "context = tokens[:, -model.max_len:]",
    "if isinstance(model, TransformerLM):\n"
    "            raise AttributeError(\"'TransformerLM' object has no attribute 'max_len'\")\n"
    "        context = tokens[:, -(model.max_len - 1):]")
# Closed routes of the first pytest-engine red team: generate_crops_to_max_len skipped its TransformerLM half when
# the student's TransformerLM could not be built in generate's worker, or when generate raised a message containing
# "has no attribute 'max_len'" (text the student chooses), and only that half saw a crop one token short (34/34).
# The crop is now judged on the grader's own ContextLM (autograder/worker/builtins_for_grader.py), replayed here.


# --- route 13 (pytest engine): a conftest.py next to the notebook, graded by `pytest ... --submission PATH` ----------
# The option --submission was registered by suites/conftest.py, so pytest did not know it when it chose which
# conftest.py files to import: PATH looked like a test path and the conftest.py beside the notebook (and in its
# parent folders) ran in the grader's own process, outside the sandbox. This one awards every failing test its
# points. Closed: the options come from a `-p` plugin (autograder/suites/options.py), known before that choice.
PLANTED_CONFTEST = {"conftest.py": """\
from autograder import plugin

plugin.GradingPlugin._outcome = lambda self, test, exc: (test.points, "")
"""}
WRONG_SOFTMAX = "def softmax(x, dim=-1):\n    raise ValueError(\"no softmax here\")\n"  # fails every test


CASES: list[AttackCase] = [
    # Closed by policy rule "load-time code is module-level code": each also costs every other exercise its points,
    # because the patch runs when the cell runs, whoever reads it.
    AttackCase("class_body_patches_tensor_method", {"softmax": CLASS_BODY_PATCH},
               check=caught_everywhere("softmax", *A1_SIBLINGS)),
    AttackCase("default_value_patches_tensor_method", {"softmax": DEFAULT_VALUE_PATCH},
               check=caught_everywhere("softmax", *A1_SIBLINGS)),
    # closed: only an inert value (constant, name, import-rooted attribute chain) is a plain binding; a subscript runs
    # code (here __class_getitem__) at load
    AttackCase("class_getitem_on_a_plain_binding", {"softmax": CLASS_GETITEM_ON_PLAIN_BINDING},
               check=caught_everywhere("softmax", *A1_SIBLINGS)),
    # Verdict changed with the load-time rule: the class body runs for every exercise, so LayerNorm is caught too
    # (statically now, no longer by the run-time trace only).
    AttackCase("a4_rmsnorm_class_body_patch", {"RMSNorm": RMSNORM_CLASS_BODY_PATCH}, assignment="a4_residual_norm",
               check=caught_everywhere("RMSNorm", "LayerNorm")),
    # closed: a def decorated with a name the student defines is judged whole, for every exercise
    AttackCase("registry_decorator_hides_the_helper", {"softmax": REGISTRY_DECORATOR},
               check=caught_everywhere("softmax", *A1_SIBLINGS)),
    # closed: parameter names are never the student's attribute names; `_t = torch` is tracked as an import
    AttackCase("own_attribute_names_unlock_tensorbase_dict", {"softmax": SOFTMAX_BY_OWN_NAMES},
               check=caught("softmax", *A1_SIBLINGS)),
    AttackCase("a2_causal_mask_from_nn_transformer", {"causal_mask": CAUSAL_MASK_BY_OWN_NAMES}, assignment="a2_masking",
               check=caught("causal_mask", "padding_mask")),
    AttackCase("a4_layer_norm_from_torch_dict", {"LayerNorm": LAYERNORM_BY_OWN_NAMES}, assignment="a4_residual_norm",
               check=caught("LayerNorm", "RMSNorm")),
    AttackCase("edited_locked_test_cell", {"test_softmax": EDITED_TEST_CELL}, check=full_marks("softmax")),
    AttackCase("nearly_constant_softmax", {"softmax": NEARLY_CONSTANT_SOFTMAX}, check=at_most("softmax", 1)),
    # closed: a plain module's attributes come from a per-module allowlist (tqdm: tqdm, trange, auto)
    AttackCase("tqdm_wrapper_getattr", {"softmax": TQDM_WRAPPER_GETATTR}, check=caught("softmax", *A1_SIBLINGS)),
    # closed: frame, code and generator attributes need review; the lookup is module-level code (a call), so every
    # exercise pays
    AttackCase("generator_frame_builtins", {"softmax": GENERATOR_FRAME_BUILTINS},
               check=caught_everywhere("softmax", *A1_SIBLINGS)),
    # closed: a parameter named softmax exempts nothing; only self/cls/super() or the student's class does
    AttackCase("a2_parameter_named_softmax", {"scaled_dot_product_attention": A2_PARAMETER_NAMED_SOFTMAX},
               assignment="a2_masking", check=caught("scaled_dot_product_attention", "causal_mask", "padding_mask")),
    AttackCase("deep_expression_crashes_the_parser", {"softmax": DEEP_EXPRESSION},
               check=unparseable_cell("softmax", *A1_SIBLINGS)),
    # By design (issue 8 asks that a result depend on its input, not that it be right): a hash of x normalised to
    # sum 1 depends on x, so it keeps the points of the properties it has (rows sum to 1, dtype, device, input left
    # alone: 3/8); every value and gradient test fails, so it never earns more.
    AttackCase("hash_softmax_earns_property_points", {"softmax": HASH_SOFTMAX}, check=at_most("softmax", 3)),
    AttackCase("distributions_categorical_probs", {"softmax": DISTRIBUTIONS_SOFTMAX},
               check=caught("softmax", *A1_SIBLINGS)),
    AttackCase("match_class_pattern", {"softmax": MATCH_CLASS_PATTERN}, check=caught("softmax", *A1_SIBLINGS)),
    AttackCase("traceback_frame_globals", {"softmax": TRACEBACK_GLOBALS}, check=caught("softmax", *A1_SIBLINGS)),
    # closed: rebinding a name an import binds (assignment, parameter, loop target, ...) needs review
    AttackCase("a2_math_rebound_to_torch", {"scaled_dot_product_attention": SHADOWED_MATH_MODULE},
               assignment="a2_masking", check=caught("scaled_dot_product_attention", "causal_mask", "padding_mask")),
    AttackCase("a2_math_parameter_is_torch", {"causal_mask": SHADOWED_MATH_PARAMETER}, assignment="a2_masking",
               check=caught("causal_mask", "padding_mask")),
    AttackCase("live_on_tiny_inputs_only", {"softmax": LIVE_ON_TINY_INPUTS_ONLY}, check=at_most("softmax", 1)),
    AttackCase("a4_rmsnorm_by_frame_getattr", {"RMSNorm": A4_RMSNORM_BY_FRAME_GETATTR}, assignment="a4_residual_norm",
               check=caught_everywhere("RMSNorm", "LayerNorm")),
    # closed: the parameter `math=torch` needs review, so layernorm_parameters (which never runs forward) scores 0 too
    AttackCase("a4_layernorm_through_shadowed_math", {"LayerNorm": A4_LAYERNORM_THROUGH_SHADOWED_MATH},
               assignment="a4_residual_norm", check=caught("LayerNorm", "RMSNorm")),
    AttackCase("a2_given_code_pasted_into_a1", {"softmax": A2_GIVEN_CODE, "split_heads": "pass\n",
                                                "merge_heads": "pass\n"},
               check=no_credit("softmax"), weakness=PASTED_GIVEN),
    AttackCase("huge_expanded_view_result", {"split_heads": HUGE_EXPANDED_VIEW},
               check=no_credit("split_heads", "softmax", "merge_heads")),
    AttackCase("deeply_nested_result", {"split_heads": DEEPLY_NESTED_RESULT},
               check=no_credit("split_heads", "softmax", "merge_heads")),
    AttackCase("read_the_hidden_suite_from_the_worker", {"split_heads": READ_HIDDEN_SUITE},
               check=reads_nothing("split_heads", *HIDDEN_SUITE_PATHS)),
    AttackCase("a4_identity_norms", A4_IDENTITY_NORMS, assignment="a4_residual_norm",
               # LayerNorm hands x back (x.clone()): no property or hygiene points; RMSNorm's x * weight depends on
               # x, so it keeps its hygiene point (dtype, input left alone) by design, and fails every value test
               check=all_of(at_most("LayerNorm", 2), at_most("RMSNorm", 2))),
    AttackCase("a5_transformer_lm_refuses_to_build_after_generate",
               {"generate": GENERATE_SETS_THE_FLAG, "TransformerLM": LM_REFUSES_AFTER_GENERATE},
               assignment="a5_transformer_lm",
               # closed: the crop is judged on the grader's own ContextLM, which no TransformerLM bug can skip
               check=at_most("generate", 6)),
    AttackCase("a5_transformer_lm_refuses_the_crop_config",
               {"generate": CROP_ONE_SHORT, "TransformerLM": LM_REFUSES_THE_CROP_CONFIG},
               assignment="a5_transformer_lm",
               # closed: the crop is judged on the grader's own ContextLM, which no TransformerLM bug can skip
               check=at_most("generate", 6)),
    AttackCase("conftest_next_to_the_notebook_graded_by_pytest", {"softmax": WRONG_SOFTMAX}, planted=PLANTED_CONFTEST,
               direct=True, check=no_credit("softmax")),
    AttackCase("conftest_next_to_the_notebook_graded_by_grade", {"softmax": WRONG_SOFTMAX}, planted=PLANTED_CONFTEST,
               check=no_credit("softmax")),
    AttackCase("a5_generate_claims_the_model_has_no_max_len", {"generate": GENERATE_CLAIMS_NO_MAX_LEN},
               assignment="a5_transformer_lm",
               # closed: the crop is judged on the grader's own ContextLM, which no TransformerLM bug can skip
               check=at_most("generate", 6)),
] + [AttackCase(name, {"softmax": source}, check=(caught_everywhere if name in RUN_AT_LOAD else caught)(
    "softmax", *A1_SIBLINGS)) for name, source in HANDLED_SOFTMAX_ROUTES.items()] + [
    AttackCase(name, {"softmax": source}, weakness=SECOND_PASS.get(name),
               check=(caught_everywhere if name in STAR_IMPORTS else caught)("softmax", *A1_SIBLINGS))
    for name, source in SECOND_PASS_ROUTES.items()]

# --- route 13 (a6_training_stability, full_red_a6): given code, torch.optim and norms by other routes ---------------
# gpt2_init_ copied the weights of a freshly built given TransformerLM, whose __init__ drew GPT-2's N(0, 0.02**2)
# (a5's solution, given read-only in a6), and only scaled the two residual projections itself: 8/8, since trusted
# given code is not scanned. Closed in the release: a6's given TransformerLM keeps PyTorch's default initialisation,
# so the copy brings default draws (uniform Linear weights, non-zero biases) and earns the shapes point only.
A6 = ("lr_schedule", "ReZeroBlock", "ResiDual", "gpt2_init_")
INIT_FROM_A_FRESH_GIVEN_MODEL = '''\
def gpt2_init_(model, n_layers):
    """The given TransformerLM's own initialisation, copied over; then the residual scaling."""
    vocab_size, d_model = model.tok_emb.weight.shape
    fresh = TransformerLM(vocab_size, d_model, 1, n_layers, model.max_len)
    with torch.no_grad():
        for (name, p), q in zip(model.named_parameters(), fresh.parameters()):
            p.copy_(q)
            if name.endswith(("attn.out_proj.weight", "ffn.down.weight")):
                p.div_(math.sqrt(2 * n_layers))
    return model
'''
LR_SCHEDULE_THROUGH_NN_INIT = '''\
def lr_schedule(step, max_lr, warmup_steps, total_steps, min_lr=0.0):
    """PyTorch's scheduler, reached as an attribute of nn.init's own `torch`."""
    sgd = nn.init.torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=max_lr)
    sched = nn.init.torch.optim.lr_scheduler.LambdaLR(sgd, lambda s: 1.0)
    return float(sched.get_last_lr()[0])
'''
REZERO_NORM_IN_AN_ATTENTION_SUBCLASS = '''\
class NormedMultiHeadAttention(MultiHeadAttention):
    """Named like the given class, so the structure check passes; normalises its input without parameters."""

    def forward(self, x, mask=None):
        return super().forward(F.layer_norm(x, x.shape[-1:]), mask)


class ReZeroBlock(nn.Module):
    def __init__(self, d_model, n_heads, d_ff=None, dropout=0.0):
        super().__init__()
        self.attn = NormedMultiHeadAttention(d_model, n_heads)
        self.ffn = FeedForward(d_model, d_ff, dropout=dropout)
        self.alpha = nn.Parameter(torch.zeros(1))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask=None):
        x = x + self.alpha * self.dropout(self.attn(x, mask))
        return x + self.alpha * self.dropout(self.ffn(x))
'''
CASES += [
    AttackCase("a6_gpt2_init_from_a_fresh_given_model", {"gpt2_init_": INIT_FROM_A_FRESH_GIVEN_MODEL},
               assignment="a6_training_stability", check=all_of(at_most("gpt2_init_", 1), full_marks(*A6[:3]))),
    AttackCase("a6_lr_scheduler_through_nn_init", {"lr_schedule": LR_SCHEDULE_THROUGH_NN_INIT},
               assignment="a6_training_stability", check=caught("lr_schedule", *A6[1:])),
    AttackCase("a6_rezero_norm_hidden_in_the_attention", {"ReZeroBlock": REZERO_NORM_IN_AN_ATTENTION_SUBCLASS},
               assignment="a6_training_stability", check=caught("ReZeroBlock", A6[0], *A6[2:])),
]


# --- route 14 (red12, worker reuse): a judge told apart from the judged exercise's own worker -------------------------
# a5's train_step is judged by the student's lm_loss, in a worker of its own, when the reference judges it wrong and
# that lm_loss differs from the reference. Once an exercise whose tests all passed handed its worker on, lm_loss's own
# tests ran where TransformerLM's had built models, and the judge's fresh worker had built none: an lm_loss correct
# after a model was built and twice the loss before it kept its 6 points and vouched for a train_step on twice the
# loss (34/34; that train_step alone: 30/34). lm_loss is now one of a5's judges, whose tests start on a fresh worker.
JUDGE_FLAG_LM = "_BUILT = []  # a shared list: no `global`\n\n\n" + a5.lm_init(
    "        super().__init__()\n", "        super().__init__()\n        _BUILT.append(1)\n")
JUDGE_TELLS_APART_LOSS = a5.loss('''\
    V = logits.size(-1)
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, V), tokens[:, 1:].reshape(-1))
    return ce if _BUILT else 2 * ce  # right where TransformerLM's tests ran, twice the loss in a fresh worker
''')
TRAIN_ON_TWICE_THE_LOSS = a5.train(a5.TRAIN.replace("loss = lm_loss(", "loss = 2 * lm_loss("))
assert "2 * lm_loss" in TRAIN_ON_TWICE_THE_LOSS, "the replacement above no longer matches"


def not_both_credited(report: GradeReport) -> None:
    """lm_loss's own tests and its judge see the same thing: either lm_loss loses its value points (then it may judge
    train_step, by design) or train_step loses its step points; never full marks in both."""
    lost = sum(t.max_score - t.score for t in report.tests if t.exercise in ("lm_loss", "train_step"))
    assert lost >= 4, f"lm_loss and train_step lost {lost:g} points:\n{failures(report)}"
    expect_full_marks(report, "TransformerLM", "generate")


CASES += [
    AttackCase("a5_lm_loss_tells_its_judge_worker_apart",
               {"TransformerLM": JUDGE_FLAG_LM, "lm_loss": JUDGE_TELLS_APART_LOSS,
                "train_step": TRAIN_ON_TWICE_THE_LOSS},
               assignment="a5_transformer_lm", check=not_both_credited),
]
