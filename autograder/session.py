"""A submission's workers, and the proxy through which hidden tests call student code.

Tests never hold student objects: ``ctx.call("softmax", x)`` sends ``x`` to a worker,
which calls the student's function and sends plain tensors back. A student module
lives in the worker and is reached through a :class:`RemoteModule` handle.
"""

from __future__ import annotations

import time

import torch

from autograder import wire
from autograder.worker.pool import HELLO_TIMEOUT, Worker, WorkerServer

LOAD_TIME_LIMIT = 60.0
# A whole submission's time, loads included. The five reference solutions grade in 0.5-7.5 s each on
# one busy core (a1 is the slowest): 150 s is twenty times that, and it bounds what a slow notebook
# (a top-level sleep reloaded by every exercise's worker) can hold a job slot for.
DEFAULT_TIME_BUDGET = 150.0
# Workers one exercise may lose (deaths, time-outs, unreadable replies) before its remaining tests fail
# without a new worker. A correct exercise loses none; three lets one test crash or hang and still gives
# the exercise's other tests their own worker, while code that kills every worker costs at most three loads.
MAX_LOST_WORKERS_PER_EXERCISE = 3
RESET_TIME_LIMIT = 5.0  # putting back a few generator states takes well under a millisecond


class CheckFailed(Exception):
    """A hidden check did not hold; the message is what the student reads.

    ``finding`` is the message without its hint; ``guess`` says the hint only guesses at a cause (the grader
    replaces it when an earlier failure explains this one); ``named`` says the message names the bug (it matched
    a known-wrong implementation).
    """

    def __init__(self, message: str = "", *, finding: str | None = None, guess: bool = False, named: bool = False):
        super().__init__(message)
        self.finding = message if finding is None else finding
        self.guess = guess
        self.named = named


class StudentRaised(CheckFailed):
    """The student's code raised an exception during a call."""

    def __init__(self, what: str, error: dict, cell_labels: dict[int, str] | None = None):
        self.error = error
        self.not_implemented = error.get("type") == "NotImplementedError"
        super().__init__(describe_error(what, error, cell_labels))


class WorkerLost(CheckFailed):
    """The worker died or stopped answering; the test fails and a fresh worker takes over."""


def describe_error(what: str, error: dict, cell_labels: dict[int, str] | None = None) -> str:
    if error.get("type") == "NotImplementedError":
        return f"{what}: not implemented yet"
    where = error.get("where") or []
    place = ""
    if where:
        last = where[-1]
        place = f" ({cell_place(last['cell'], last['line'], cell_labels)}, in {last['function']}: {last['code']})"
    message = wire.printable(error.get("message") or "").strip().splitlines()
    first = wire.shorten(message[0], 300) if message else ""
    return wire.printable(f"{what} raised {error.get('type')}: {first}{place}")


def cell_place(cell, line, cell_labels: dict[int, str] | None) -> str:
    """``your softmax cell, line 4``: the cell as the student finds it (``Submission.cell_labels``)."""
    try:
        label = (cell_labels or {}).get(int(cell))
    except (TypeError, ValueError):
        label = None
    return f"{label or f'cell {cell}'}, line {line}"


def load_error(device: str, error) -> str:
    """Why a worker could not load the notebook at all (its device unusable, say): one line for the report."""
    error = error if isinstance(error, dict) else {}
    message = wire.printable(error.get("message") or "").strip().splitlines()
    first = wire.shorten(message[0], 300) if message else ""
    if error.get("type") == "SandboxError":  # a real refusal is read from the hello, before any student code ran
        return wire.printable(f"the worker's load reply, sent after the notebook's code ran, claims a sandbox refusal "
                              f"({first}); a real one comes before any student code, so the notebook is graded as is")
    if error.get("type") == "DeviceError":
        return f"the worker cannot use device {device} ({first}); grade with --device cpu instead"
    return wire.printable(f"the worker could not load the notebook ({error.get('type')}: {first})")


def _well_formed_error(error) -> bool:
    """An error report as the worker's runtime writes it (a forged one is treated as a lost worker)."""
    if not isinstance(error, dict) or not all(isinstance(error.get(k, ""), str) for k in ("type", "message", "output")):
        return False
    where = error.get("where", [])
    return isinstance(where, list) and all(
        isinstance(w, dict) and all(isinstance(w.get(k), (str, int)) for k in ("cell", "line", "function", "code"))
        for w in where)


def well_formed_load_report(header: dict) -> dict:
    """The load reply, keeping only entries of the shape the runtime writes: student code may have rewritten it,
    and the runner reads it for notes (which cells failed, which names exist)."""
    names = header.get("names")
    cells = header.get("cells")
    return {
        "ok": True,
        "names": [n for n in names if isinstance(n, str)] if isinstance(names, list) else [],
        "cells": [c for c in cells if isinstance(c, dict) and type(c.get("index")) is int
                  and (c.get("ok") is True or (c.get("ok") is False and _well_formed_error(c.get("error"))))]
        if isinstance(cells, list) else [],
    }


class CallResult:
    def __init__(self, value, args_after, grads, traced):
        self.value = value
        self.args_after = args_after
        self.grads = grads or {}
        self.traced = traced

    @property
    def input_grads(self):
        return self.grads.get("inputs")

    @property
    def param_grads(self) -> dict:
        return self.grads.get("params") or {}

    @property
    def backward_error(self) -> dict | None:
        return self.grads.get("error")


class Session:
    """The workers of one submission: one, reset between exercises that pass (``use_worker_for``); a fresh one
    after an exercise that lost points, and after any crash.

    Its clock starts when it is made: every load and request of the submission counts against ``time_budget``;
    an exercise that lost ``MAX_LOST_WORKERS_PER_EXERCISE`` workers gets no new one.
    """

    def __init__(self, server: WorkerServer, program: list[dict], *, seed: int, device: str,
                 trace: list[str], time_limit: float, time_budget: float | None = None):
        self.server = server
        self.program = program
        self.seed = seed
        self.device = device
        self.trace = trace
        self.time_limit = time_limit
        self.worker: Worker | None = None
        self.worker_scope: str | None = None
        self.load_report: dict | None = None
        self.load_failure: str | None = None  # set once loading itself crashed or hung
        # Set when a worker's hello (sent before any student code ran) showed this machine cannot sandbox it as a
        # grade requires: the submission is not graded at all (no results, no grades.csv row), never given a 0.
        self.environment_failure: str | None = None
        self.sandbox_layers: dict = {}
        self.deadline: float | None = None
        self.device_lost = False  # the worker's GPU context broke: the next test gets a fresh worker
        self.time_budget = time_budget or DEFAULT_TIME_BUDGET
        self.budget_ends = time.monotonic() + self.time_budget  # the submission's clock, loads included
        self.lost_in_scope = 0  # workers lost by the current exercise
        self.scope_failed = False  # a test of the current exercise lost points (``test_failed``)
        self.reset_pending = False  # the kept worker is reset before the next exercise's first request
        self.last_loss = ""
        self.cell_labels: dict[int, str] = {}  # cell index -> where a student finds it (Submission.cell_labels)

    def begin_test(self, time_limit: float | None) -> None:
        """Start one test's clock: all its requests together get ``time_limit`` seconds."""
        self.deadline = time.monotonic() + (time_limit or self.time_limit)

    def budget_left(self) -> float:
        return self.budget_ends - time.monotonic()

    def _refuse_if_spent(self) -> None:
        """No new request once the submission's budget is spent, and no new worker once the exercise lost too many."""
        if self.budget_left() <= 0:
            raise WorkerLost(f"not run: this submission used up its time budget of {self.time_budget:g} s "
                             "(slow top-level code in the notebook, or tests that hang?)")
        if self.lost_in_scope >= MAX_LOST_WORKERS_PER_EXERCISE and (self.worker is None or not self.worker.alive):
            raise WorkerLost(f"not run: {self.lost_in_scope} workers were lost in this exercise already, so no new one "
                             f"is started (the last: {self.last_loss})")

    def worker_lost(self, reason: str) -> WorkerLost:
        """Count a lost worker against the exercise; the returned exception is what the test says."""
        self.drop_worker()
        self.lost_in_scope += 1
        self.last_loss = reason
        return WorkerLost(reason)

    # --- worker lifecycle ------------------------------------------------------------

    def use_worker_for(self, scope: str, fresh: bool = False) -> None:
        """Start each exercise on a worker in the state its load left: the last exercise's worker, reset
        (``op_reset``: random generators, grad mode, default dtype), when every test of that exercise passed;
        else a fresh one, so what a failing exercise's code changed stays there. ``fresh``: a fresh one in any
        case (an exercise that judges another in a worker of its own, ``Assignment.judges``). And a fresh worker for
        each test after one that broke the worker's GPU context, so one CUDA error does not fail the exercise's
        other tests."""
        if scope != self.worker_scope or self.device_lost:
            if scope != self.worker_scope and not self.device_lost and not self.scope_failed and not fresh:
                self.reset_pending = self.worker is not None
            else:
                self.drop_worker()
            if scope != self.worker_scope:
                self.lost_in_scope = 0
                self.scope_failed = False
            self.worker_scope = scope
            self.device_lost = False

    def test_failed(self) -> None:
        """A test of the current exercise lost points: the next exercise gets a fresh worker."""
        self.scope_failed = True

    def drop_worker(self) -> None:
        self.reset_pending = False
        if self.worker is not None:
            self.worker.close()
            self.worker = None

    def _worker(self) -> Worker:
        if self.load_failure:
            raise WorkerLost(self.load_failure)
        self._refuse_if_spent()
        if self.reset_pending:
            self._reset_worker()
        if self.worker is None or not self.worker.alive:
            self.worker = self._load_worker()
        return self.worker

    def _reset_worker(self) -> None:
        """Put the kept worker back in the state its load left (see ``use_worker_for``); one that fails to is
        replaced by a fresh one, at no cost to the exercise."""
        self.reset_pending = False
        if self.worker is None or not self.worker.alive:
            return
        try:
            limit = min(RESET_TIME_LIMIT, max(0.05, self.budget_left()))
            reply, _ = self.worker.request({"op": "reset"}, timeout=limit)
        except wire.WireError:
            reply = {}
        if reply.get("ok") is not True:
            self.drop_worker()

    def _load_worker(self) -> Worker:
        """A fresh worker with the notebook loaded. Loading counts against the submission's budget, not
        against the test that asked for it: a slow notebook must not make every test time out in turn."""
        started = time.monotonic()
        limit = min(LOAD_TIME_LIMIT, self.budget_left())
        worker = self.server.spawn()
        # The hello is the machine's, sent before any student code: read against its own timeout, never the
        # student's budget, or a budget spent down to milliseconds would make the submission "not graded".
        self._check_environment(worker, HELLO_TIMEOUT)
        try:
            header, _ = worker.request(
                {"op": "load", "cells": self.program, "device": self.device, "seed": self.seed, "trace": self.trace},
                timeout=limit,
            )
        except wire.MessageTimeout:
            self._note_layers(worker)
            self.load_failure = (f"running the notebook's definitions took longer than {limit:.0f} s "
                                 "(an infinite loop or a long sleep at the top level of a cell?)")
            if limit < LOAD_TIME_LIMIT:
                self.load_failure = (f"loading the notebook was stopped when this submission's time budget of "
                                     f"{self.time_budget:g} s ran out (slow code at the top level of a cell?)")
            raise WorkerLost(self.load_failure) from None
        except wire.WireError as exc:
            self._note_layers(worker)
            self.load_failure = (f"the notebook's code ended the worker while its cells were loading ({exc}): "
                                 "sys.exit/os._exit at the top level of a cell?")
            raise WorkerLost(self.load_failure) from None
        self._note_layers(worker)
        if not header.get("ok"):
            self.load_failure = load_error(self.device, header.get("error"))
            worker.close()
            raise WorkerLost(self.load_failure)
        if self.load_report is None:
            self.load_report = well_formed_load_report(header)
            if self.device == "cpu":  # applied by the runtime before the first cell runs: a load that succeeded did
                self.sandbox_layers["rlimit_as"] = "on"
        if self.deadline is not None:
            self.deadline += time.monotonic() - started
        return worker

    def _check_environment(self, worker: Worker, limit: float) -> None:
        """Read the worker's hello before sending it anything; a worker that stopped before saying it, or that
        lacks layers a grade requires (``sandbox.missing_layers``) when weaker grading was not allowed, makes the
        submission not graded. Only the hello counts: it is sent before student code runs, so no submission can
        forge it (a refusal in a later reply is the student's code talking, and costs the student)."""
        try:
            worker.hello(limit)
            problem = worker.environment_problem(getattr(self.server, "allow_weaker", False))
        except wire.WireError as exc:
            problem = f"the worker stopped while entering its sandbox, before running any code ({exc})"
        if problem:
            worker.kill()
            self._note_layers(worker)
            self.environment_failure = problem
            self.load_failure = f"not graded: environment ({problem})"
            raise WorkerLost(self.load_failure)

    def _note_layers(self, worker: Worker) -> None:
        """The layers the first worker reported before any student code ran (the load reply's word is not taken),
        recorded whether the load then succeeded or not."""
        if not self.sandbox_layers and worker.sandbox is not None:
            self.sandbox_layers = dict(worker.sandbox)

    def close(self) -> None:
        self.drop_worker()

    def remote(self, handle: wire.Handle) -> RemoteObject:
        return RemoteModule(self, handle) if handle.is_module else RemoteObject(self, handle)

    # --- requests --------------------------------------------------------------------

    def request(self, header: dict, buffers: list[bytes], what: str):
        worker = self._worker()
        remaining = self.time_limit if self.deadline is None else max(0.05, self.deadline - time.monotonic())
        budget_left = self.budget_left()
        try:
            reply, reply_buffers = worker.request(header, buffers, timeout=min(remaining, max(0.05, budget_left)))
        except wire.MessageTimeout:
            if budget_left < remaining:
                raise self.worker_lost(f"{what} was stopped when this submission's time budget of "
                                       f"{self.time_budget:g} s ran out") from None
            raise self.worker_lost(f"{what} did not return within the test's time limit: an infinite loop, "
                                   "or a very slow implementation?") from None
        except wire.PeerClosed:
            raise self.worker_lost(f"the worker process died while running {what}: did the code call "
                                   "sys.exit/os._exit, crash, or run out of memory?") from None
        except wire.WireError as exc:
            raise self.worker_lost(f"{what} sent back an unreadable result ({exc})") from None
        if not reply.get("ok"):
            error = reply.get("error")
            if not _well_formed_error(error):
                raise self.worker_lost(f"{what} sent back an unreadable error report")
            self.device_lost = self.device_lost or reply.get("device_lost") is True
            raise StudentRaised(what, error, self.cell_labels)
        return reply, reply_buffers

    def call(self, target, *args, method=None, grad=None, what=None, **kwargs) -> CallResult:
        what = what or (f"{target}()" if isinstance(target, str) else f"{method or 'forward'}()")
        buffers: list[bytes] = []
        header = {
            "op": "call",
            "target": target if isinstance(target, (str, dict)) else {"handle": target.id},
            "method": method,
            "args": wire.encode(list(args), buffers),
            "kwargs": wire.encode(kwargs, buffers),
        }
        if grad is not None:
            header["grad"] = {"wrt": list(grad["wrt"]),
                              "grad_outputs": wire.encode(list(grad["grad_outputs"]), buffers)}
        reply, reply_buffers = self.request(header, buffers, what)
        decode = lambda key, factory=None: self.decode(reply.get(key), reply_buffers, what, factory)  # noqa: E731
        return CallResult(
            value=decode("result", self.remote),
            args_after=decode("args_after"),
            grads=decode("grads") if "grads" in reply else None,
            traced=[wire.printable(t)[:200] for t in reply.get("traced", []) if isinstance(t, str)],
        )

    def decode(self, data, buffers, what: str, factory=None):
        """Decode a reply; a forged one costs the worker its life, not the grader a crash."""
        try:
            return wire.decode(data, buffers, factory)
        except wire.WireError as exc:
            raise self.worker_lost(f"{what} sent back an unreadable result ({exc})") from None


class RemoteObject:
    """An object that lives in the worker (an optimizer, a generator), reached by handle."""

    def __init__(self, session: Session, handle: wire.Handle):
        self.session = session
        self.id = handle.id
        self.type_name = handle.type_name
        self.wire_handle = handle  # how it crosses back as an argument

    def call_method(self, method: str, *args, **kwargs) -> CallResult:
        what = f"{self.type_name.rpartition('.')[2]}.{method}()"
        return self.session.call(self, *args, method=method, what=what, **kwargs)


class RemoteModule(RemoteObject):
    """A student ``nn.Module`` that lives in the worker."""

    def describe(self) -> dict:
        """Parameters, buffers and submodules as they are now (fetched every time: calls change them)."""
        what = f"inspecting {self.type_name}"
        reply, buffers = self.session.request({"op": "get", "target": {"handle": self.id}}, [], what)
        submodules = reply.get("submodules")
        if not isinstance(submodules, list) or not all(isinstance(m, dict) for m in submodules):
            submodules = self.session.decode({"__bad__": 1}, [], what)  # raises WorkerLost
        return {
            "params": self.session.decode(reply.get("params"), buffers, what),
            "buffers": self.session.decode(reply.get("buffers"), buffers, what),
            "submodules": [{k: wire.printable(v)[:300] if isinstance(v, str) else v for k, v in m.items()}
                           for m in submodules],  # names, types and reprs end up in messages a person reads
        }

    @property
    def parameters(self) -> dict:
        return self.describe()["params"]

    @property
    def submodules(self) -> dict[str, dict]:
        return {m["name"]: m for m in self.describe()["submodules"]}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
        """Load ``state`` non-strictly; returns (missing, unexpected) names, as ``nn.Module.load_state_dict`` does."""
        buffers: list[bytes] = []
        reply, _ = self.session.request({"op": "set", "target": {"handle": self.id},
                                         "state": wire.encode(state, buffers)},
                                        buffers, f"{self.type_name}.load_state_dict()")
        names = []
        for key in ("missing", "unexpected"):
            found = reply.get(key, [])
            if not isinstance(found, list) or not all(isinstance(k, str) for k in found):
                raise self.session.worker_lost(f"{self.type_name}.load_state_dict() sent back an unreadable reply")
            names.append([wire.printable(k)[:200] for k in found[:1000]])
        return names[0], names[1]

    def set_mode(self, train: bool = False, dtype: torch.dtype | None = None) -> None:
        header = {"op": "mode", "target": {"handle": self.id}, "train": train,
                  "dtype": str(dtype).removeprefix("torch.") if dtype else None}
        self.session.request(header, [], f"{self.type_name}.train()/to()")

    def __call__(self, *args, grad=None, **kwargs) -> CallResult:
        return self.session.call(self, *args, method="__call__", grad=grad,
                                 what=f"{self.type_name.rpartition('.')[2]}.forward()", **kwargs)
