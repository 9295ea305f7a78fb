"""How a hidden suite is declared: tests with points, grouped by exercise (what each may use: autograder/policy.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

import torch

from autograder import policy
from autograder.session import CallResult, CheckFailed, RemoteModule, Session, StudentRaised
from autograder.wire import WireTensor

GROUPS = ("shapes", "numerics", "properties", "gradients", "hygiene")


@dataclass
class HiddenTest:
    name: str
    title: str
    exercise: str
    group: str
    points: float
    fn: Callable
    time_limit: float | None = None

    @property
    def display_name(self) -> str:
        return f"{self.exercise}: {self.title}"


@dataclass
class Suite:
    assignment: str
    notebook: str
    exercises: list[str]
    # Likely causes of errors the student's code raises: (exercise or None, message parts, hint).
    error_hints: list[tuple[str | None, tuple[str, ...], str]] = field(default_factory=list)
    tests: list[HiddenTest] = field(default_factory=list)

    def test(self, exercise: str, points: float, group: str, time_limit: float | None = None):
        if exercise not in self.exercises or group not in GROUPS:
            raise ValueError(f"unknown exercise {exercise!r} or group {group!r}")

        def register(fn):
            title = (fn.__doc__ or fn.__name__).strip().splitlines()[0]
            self.tests.append(HiddenTest(fn.__name__, title, exercise, group, points, fn, time_limit))
            return fn

        return register

    @property
    def max_score(self) -> float:
        return sum(t.points for t in self.tests)

    def traced_names(self) -> list[str]:
        """Built-ins the worker's run-time trace watches: the second, advisory signal of the usage policy."""
        return policy.traced_names(self.assignment)

    def hint_for_error(self, exercise: str, error: dict) -> str | None:
        """The hint for the test's own exercise first, then for a function on the traceback, then a generic one."""
        functions = {w.get("function") for w in error.get("where") or []}
        message = error.get("message") or ""
        matching = [(where, hint) for where, parts, hint in self.error_hints if any(part in message for part in parts)]
        for accept in (lambda w: w == exercise, lambda w: w in functions, lambda w: w is None):
            for where, hint in matching:
                if accept(where):
                    return hint
        return None

    def ordered_tests(self) -> list[HiddenTest]:
        """Tests grouped by exercise (one worker each), in the order they were declared."""
        rank = {name: i for i, name in enumerate(self.exercises)}
        return sorted(self.tests, key=lambda t: rank[t.exercise])


def seed_for_test(submission_seed: int, test_name: str) -> int:
    """Each test's inputs depend on the submission and the test, never on test order."""
    digest = hashlib.sha256(f"{submission_seed}:{test_name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % (2**63)


class Context:
    """What a hidden test gets: seeded inputs and calls into the student's code."""

    def __init__(self, session: Session, suite: Suite, test: HiddenTest, seed: int):
        self.session = session
        self.suite = suite
        self.test = test
        # CPU on purpose: inputs are drawn in the grader and sent to the worker's device, so a test sees the
        # same values on any device. Objects made in the worker (ctx.builtin) take ctx.session.device instead.
        self.generator = torch.Generator().manual_seed(seed)

    # --- inputs ----------------------------------------------------------------------

    def randn(self, *shape, dtype=torch.float64, scale: float = 1.0) -> torch.Tensor:
        """Normal samples drawn in float64, then cast, so float32 and float64 variants share values."""
        return (torch.randn(*shape, generator=self.generator, dtype=torch.float64) * scale).to(dtype)

    def randint(self, low: int, high: int) -> int:
        return int(torch.randint(low, high, (), generator=self.generator))

    def permutation(self, n: int) -> torch.Tensor:
        return torch.randperm(n, generator=self.generator)

    # --- calls into the worker -------------------------------------------------------

    def call(self, name: str, *args, **kwargs):
        """Call the student's function ``name``; returns what it returned."""
        return self.call_full(name, *args, **kwargs).value

    def call_full(self, name: str, *args, grad=None, **kwargs) -> CallResult:
        result = self.session.call(name, *args, grad=grad, **kwargs)
        self._check_trace(result, f"{name}()")
        return result

    def builtin(self, name: str, /, *args, **kwargs):
        """Call a helper of ``autograder/worker/builtins_for_grader.py`` inside the worker."""
        return self.session.call({"builtin": name}, *args, what=f"the grader's {name}()", **kwargs).value

    def construct(self, class_name: str, *args, **kwargs) -> RemoteModule:
        module = self.call(class_name, *args, **kwargs)
        if not isinstance(module, RemoteModule):
            kind = getattr(module, "type_name", type(module).__name__)
            raise CheckFailed(f"{class_name}(...) gave a {kind}, expected an nn.Module instance")
        return module

    def forward(self, module: RemoteModule, *args, grad=None, **kwargs) -> CallResult:
        result = module(*args, grad=grad, **kwargs)
        self._check_trace(result, f"{module.type_name.rpartition('.')[2]}.forward()")
        return result

    def _check_trace(self, result: CallResult, what: str) -> None:
        """A watched built-in the worker saw at run time fails the test (advisory: the worker could hide it)."""
        exercise = self.test.exercise
        watched = policy.policy_for(self.suite.assignment, exercise).traced
        used = [label for label in result.traced if label.rpartition(".")[2] in watched]
        if used:
            raise CheckFailed(f"{what} called {used[0]} at run time, which {exercise} may not use. "
                              f"{policy.describe(self.suite.assignment, exercise)}")


def load_weights(module: RemoteModule, weights: dict) -> None:
    """Load a test's weights into a student's module with strict names; a persistent buffer the
    module registered itself (a scale, a mask, sinusoids), reported missing because the test never
    sends it, keeps its value. Any other mismatch (an unexpected key) raises the student's error."""
    try:
        module.load_state_dict(weights)
    except StudentRaised as exc:
        message = exc.error.get("message") or ""
        missing = message.partition("Missing key(s) in state_dict:")[2].split("Unexpected key(s)")[0]
        buffers = {name: value.tensor for name, value in module.describe()["buffers"].items()
                   if isinstance(value, WireTensor) and value.tensor is not None and f'"{name}"' in missing}
        if not buffers or "Unexpected key(s)" in message:
            raise
        module.load_state_dict({**weights, **buffers})
