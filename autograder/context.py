"""What a hidden test gets as its ``ctx`` fixture: seeded inputs and calls into the student's worker."""

from __future__ import annotations

import contextlib
import hashlib

import torch

from autograder import policy
from autograder.hidden import Assignment, HiddenTest
from autograder.liveness import CallLog
from autograder.session import CallResult, CheckFailed, RemoteModule, Session


def seed_for_test(submission_seed: int, test_name: str) -> int:
    """Each test's inputs depend on the submission and the test, never on test order."""
    digest = hashlib.sha256(f"{submission_seed}:{test_name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % (2**63)


class Context:
    """What a hidden test gets: seeded inputs and calls into the student's code."""

    def __init__(self, session: Session, suite: Assignment, test: HiddenTest, seed: int, log: CallLog | None = None):
        self.session = session
        self.suite = suite
        self.test = test
        self.log = CallLog() if log is None else log  # what each call into the student's code got and returned
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
        self.log.record(self.test.exercise, name, args, kwargs, result.value)
        return result

    def builtin(self, name: str, /, *args, **kwargs):
        """Call a helper of ``autograder/worker/builtins_for_grader.py`` inside the worker."""
        return self.session.call({"builtin": name}, *args, what=f"the grader's {name}()", **kwargs).value

    def construct(self, class_name: str, *args, **kwargs) -> RemoteModule:
        module = self.call(class_name, *args, **kwargs)
        if not isinstance(module, RemoteModule):
            kind = getattr(module, "type_name", type(module).__name__)
            raise CheckFailed(f"{class_name}(...) gave a {kind}, expected an nn.Module instance")
        self.log.constructed[module.id] = class_name
        return module

    def forward(self, module: RemoteModule, *args, grad=None, **kwargs) -> CallResult:
        result = module(*args, grad=grad, **kwargs)
        self._check_trace(result, f"{module.type_name.rpartition('.')[2]}.forward()")
        # A forward belongs to the exercise whose constructor built the module (a given module: its class name).
        target = self.log.constructed.get(module.id, module.type_name.rpartition(".")[2])
        self.log.record(self.test.exercise, target, args, kwargs, result.value)
        return result

    @contextlib.contextmanager
    def worker_of_its_own(self, scope: str):
        """A Context on a fresh worker of the same notebook, to run another exercise's code as a judge.

        Never the worker of the code being judged: code there can change the other exercise once the judged
        one has run (a flag it sets), and so vouch for anything. Its calls count against this test's time and
        are not recorded in this submission's call log.
        """
        if scope not in self.suite.judges:  # its own tests must start on a fresh worker too, as this judge does
            raise RuntimeError(f"{scope} judges in a worker of its own: list it in {self.suite.name}'s judges")
        main = self.session
        session = Session(main.server, main.program, seed=main.seed, device=main.device, trace=main.trace,
                          time_limit=main.time_limit)
        session.use_worker_for(scope)
        session.deadline = main.deadline
        try:
            yield Context(session, self.suite, self.test, seed=0)
        finally:
            session.close()

    def _check_trace(self, result: CallResult, what: str) -> None:
        """A watched built-in the worker saw at run time fails the test (advisory: the worker could hide it)."""
        exercise = self.test.exercise
        watched = policy.policy_for(self.suite.assignment, exercise).traced
        used = [label for label in result.traced if label.rpartition(".")[2] in watched]
        if used:
            raise CheckFailed(f"{what} called {used[0]} at run time, which {exercise} may not use. "
                              f"{policy.describe(self.suite.assignment, exercise)}")
