"""Submissions that attack the grader or their neighbours through the worker (issue 8, point 5), for a1_attention.

Like ``tests/catalog/adversarial.py``, every entry replaces exercise cells of the reference solution; the
harness, ``tests/test_adversarial_worker.py``, grades it and hands the entry's ``check`` what it observed:
the report, the rendered text and results.json, the seconds it took, how many workers were started, how
much the grader's peak memory grew, and the SysV IPC objects that exist on the machine afterwards.

Placeholders filled in by the harness: ``__GRADER_PID__`` (the grading process), ``__SERVER_PID__`` (the
worker server), ``__SHM_KEY__`` (a SysV key no other run uses).

Checks assert what this part of the issue is about (bounded reads, budgets, isolation, what the student may
read); whether an attacked exercise also needs review is the static scan's business, so tests of the attacked
exercise are only required to score 0 where the attack cannot give right values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from autograder.runner import GradeReport
from tests.catalog.adversarial import (
    MERGE_RIGHT,
    SOFTMAX_RIGHT,
    SUITE,
    USES_MERGE,
    USES_SOFTMAX,
    USES_SPLIT,
    results,
    table,
)

EXERCISES = tuple(SUITE.exercises)


@dataclass
class Seen:
    """What the harness observed while grading one case."""

    report: GradeReport
    text: str                     # the report as printed (no colour)
    results_json: str             # results.json as written
    elapsed: float
    spawned: int                  # workers started for this submission
    peak_growth: int              # bytes the grader's peak resident memory grew by
    ipc_after: set[str] = field(default_factory=set)  # SysV IPC keys of this run's key family alive afterwards
    neighbour: GradeReport | None = None  # the correct submission graded next to it (batch cases)
    honest_layers: dict = field(default_factory=dict)  # what an honest worker's sandbox reports


@dataclass
class WorkerCase:
    name: str
    cells: dict[str, str]
    check: Callable[[Seen], None]
    time_limit: float | None = None
    time_budget: float | None = None
    batch: bool = False               # graded next to the reference solution, two at once


# --- what the checks assert ------------------------------------------------------------

def every_test_reported(seen: Seen) -> None:
    assert [t.name for t in seen.report.tests] == [t.name for t in SUITE.tests], seen.report.diagnostics


def fails(seen: Seen, tests: set[str], *phrases: str) -> None:
    """Each of ``tests`` scores 0 and says one of ``phrases``; every other test scores full marks."""
    every_test_reported(seen)
    wrong = []
    for name, t in results(seen.report).items():
        if name in tests:
            if t.score != 0 or not any(p.lower() in t.output.lower() for p in phrases):
                wrong.append(f"{name}: {t.score:g}/{t.max_score:g} {t.output[:240]!r}")
        elif t.score != t.max_score:
            wrong.append(f"{name} should pass: {t.score:g}/{t.max_score:g} {t.output[:240]!r}")
    assert not wrong, "\n".join(wrong) + "\nall results:\n" + table(seen.report)


def student_visible(seen: Seen) -> list[str]:
    """Everything a student reads: the printed report, and results.json without extra_data."""
    data = json.loads(seen.results_json)
    return [seen.text, data["output"], *(t["output"] for t in data["tests"]), *(t["name"] for t in data["tests"])]


MEMORY_BOUND = 256 * 2**20  # the grader's peak may grow this much at most (main: 2.4 GB for a 48 MiB bomb)


def bounded(seen: Seen, phrase: str = "unreadable result") -> None:
    """A bomb in every reply of merge_heads: each costs a worker, never the grader's memory."""
    fails(seen, USES_MERGE, phrase, "no new one is started")
    assert seen.peak_growth < MEMORY_BOUND, f"the grader's peak memory grew by {seen.peak_growth / 2**20:.0f} MiB"
    internal = [d for d in seen.report.diagnostics if "internal error" in d] + seen.report.internal_errors
    assert not internal, f"a forged message was blamed on the grader: {internal[0][:300]}"


# =========================================================================================
# 1. Replies the grader must refuse unread: size, header, values, depth, buffers
# =========================================================================================

def _forger(frame_expression: str) -> str:
    """merge_heads writes a forged frame to its socket before its real reply (the grader reads the forgery)."""
    return f'''\
import os
import struct


def _frame():
    return {frame_expression}


def _forge():
    frame = _frame()
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


# 48 MiB of nested JSON in the header: 27 000 lists nested 900 deep each, under the parser's recursion limit,
# 24 million lists in all (main parsed them: 2.6 GB and 13 s with the GIL held).
NESTED_48_MIB = '''(lambda head: struct.pack("<I", len(head)) + head)(
        b'{"ok": true, "result": [' + b",".join([b"[" * 900 + b"]" * 900] * 27_000) + b"]}")'''
NESTED_48_MIB_HEADER = _forger(NESTED_48_MIB)

# 48 MiB of flat JSON: no nesting at all, only size.
FLAT_48_MIB_HEADER = _forger('''(lambda head: struct.pack("<I", len(head)) + head)(
        b'{"ok": true, "result": [' + b"0," * (24 * 2**20) + b'0]}')''')

# Under the header's size limit, but 300 000 values (each a list: about 30 MB of Python objects).
MANY_VALUES = _forger('''(lambda head: struct.pack("<I", len(head)) + head)(
        b'{"ok": true, "result": [' + b"[]," * 300_000 + b'[]]}')''')

# 40 lists deep, in 100 bytes: valid JSON nested past the depth limit.
DEEP_BUT_SMALL = _forger('''(lambda head: struct.pack("<I", len(head)) + head)(
        b'{"ok": true, "result": ' + b"[" * 40 + b"]" * 40 + b'}')''')

# A small header followed by a million empty buffers (a list of a million objects on main).
MILLION_BUFFERS = _forger('''(lambda head: struct.pack("<I", len(head)) + head + struct.pack("<Q", 0) * 1_000_000)(
        b'{"ok": true, "result": null}')''')

# A 40 MiB header length in a 60 MiB frame, of which 1 KiB is sent: refused from its first 12 bytes (main waited
# for the rest until the test's time limit).
HUGE_FRAME = '''\
import os
import struct


def _forge():
    head = struct.pack("<I", 40 * 2**20) + b"[" * 1024
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                os.write(int(name), struct.pack("<Q", 60 * 2**20) + head)
        except OSError:
            pass


def merge_heads(x):
    _forge()
    B, H, T, d_head = x.shape
    return x.transpose(1, 2).reshape(B, T, H * d_head)
'''


def check_huge_frame(seen: Seen) -> None:
    bounded(seen, "exceeds")


# =========================================================================================
# 2. Time: a slow notebook, workers that die in every call
# =========================================================================================

TOP_LEVEL_SLEEP = '''\
import time

time.sleep(3)  # at the top level: every worker pays it while loading


def softmax(x, dim=-1):
    e = (x - x.amax(dim=dim, keepdim=True)).exp()
    return e / e.sum(dim=dim, keepdim=True)
'''

SLEEP_BUDGET = 12.0  # one 3 s load and the tests fit; one load per exercise would not


def check_top_level_sleep(seen: Seen) -> None:
    # Every exercise passes, so one worker serves them all, reset between exercises: the 3 s load is paid once
    # (one worker per test on main once: 27 loads, 148 s at sleep(5)).
    every_test_reported(seen)
    assert seen.spawned == 1, f"{seen.spawned} workers for a notebook whose every exercise passes"
    failed = [f"{t.name}: {t.output[:200]!r}" for t in seen.report.tests if not t.passed]
    assert not failed, "a slow but correct notebook lost points:\n" + "\n".join(failed)
    assert seen.elapsed < SLEEP_BUDGET, f"grading took {seen.elapsed:.1f} s"


TOP_LEVEL_SLEEP_WRONG = TOP_LEVEL_SLEEP.replace("return e / e.sum(dim=dim, keepdim=True)", "return e")
SLEEP_WRONG_BUDGET = 8.0  # softmax and attention fail, so split_heads needs a third worker: three 3 s loads cannot fit


def check_top_level_sleep_wrong(seen: Seen) -> None:
    # An exercise that lost points hands the next one a fresh worker, which pays the load again; whatever runs
    # when the budget is spent fails with a line that says so.
    every_test_reported(seen)
    assert seen.spawned <= len(EXERCISES), f"{seen.spawned} workers for {len(EXERCISES)} exercises"
    stopped = [t for t in seen.report.tests if "time budget" in t.output]
    assert stopped, f"a budget of {SLEEP_WRONG_BUDGET:g} s cannot hold three 3 s loads and their tests"
    bound = SLEEP_WRONG_BUDGET + 10  # the budget, plus the one test or load that was running when it ran out
    assert seen.elapsed < bound, f"grading took {seen.elapsed:.1f} s, more than {bound:.0f} s"


OS_EXIT_IN_EVERY_CALL = '''\
import os


def softmax(x, dim=-1):
    os._exit(3)
'''


def check_os_exit_in_every_call(seen: Seen) -> None:
    # softmax, attention and MultiHeadAttention.forward kill every worker: each exercise gets three, then its
    # remaining tests fail without a reload (main: a worker per test, 21 of them).
    fails(seen, USES_SOFTMAX, "worker process died")
    expect_phrase(seen, {"softmax_keeps_dtype_device_and_input", "attention_gradients_match"}, "no new one is started")
    assert seen.spawned <= 3 + 3 + 1 + 1 + 3, f"{seen.spawned} workers started"


def expect_phrase(seen: Seen, tests: set[str], phrase: str) -> None:
    got = results(seen.report)
    wrong = {n: got[n].output[:300] for n in tests if phrase not in got[n].output}
    assert not wrong, f"these tests should say {phrase!r}: {wrong}"


# =========================================================================================
# 3. Isolation: SysV IPC, other processes in /proc
# =========================================================================================

SYSV_SHARED_MEMORY = f'''\
import ctypes

_libc = ctypes.CDLL(None, use_errno=True)
_libc.shmat.restype = ctypes.c_void_p
IPC_CREAT = 0o1000


def _leave_ipc_behind():
    """A shared-memory segment, a message queue and a semaphore set that outlive this worker (on main)."""
    key = __SHM_KEY__
    shm = _libc.shmget(key, 4096, IPC_CREAT | 0o666)
    if shm >= 0:
        address = _libc.shmat(shm, None, 0)
        if address not in (None, ctypes.c_void_p(-1).value):
            ctypes.memmove(address, b"another student's answer", 25)
    _libc.msgget(key + 1, IPC_CREAT | 0o666)
    _libc.semget(key + 2, 1, IPC_CREAT | 0o666)


def merge_heads(x):
    _leave_ipc_behind()
{MERGE_RIGHT}    return result
'''


def check_sysv_shared_memory(seen: Seen) -> None:
    fails(seen, set(), "")
    assert not seen.ipc_after, f"SysV IPC objects outlived the worker: {sorted(seen.ipc_after)}"


READS_OTHER_PROCESSES = '''\
import os


def _peek():
    """What /proc shows of other processes: their number, and the grader's and the server's command lines."""
    own = str(os.getpid())
    others = [p for p in os.listdir("/proc") if p.isdigit() and p != own]
    found = []
    for pid in (__GRADER_PID__, __SERVER_PID__):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                found.append(f.read().replace(b"\\0", b" ").decode(errors="replace")[:80])
        except OSError as exc:
            found.append(type(exc).__name__)
    return len(others), found


def merge_heads(x):
    n, found = _peek()
    raise RuntimeError(f"other pids {n}; grader and server: {found}")
'''


def check_reads_other_processes(seen: Seen) -> None:
    fails(seen, USES_MERGE, "RuntimeError")
    said = results(seen.report)["merge_heads_shape"].output
    assert "other pids 0;" in said, f"the worker saw other processes: {said[:300]!r}"
    assert "python" not in said and "autograder" not in said, f"the worker read a command line: {said[:300]!r}"


# =========================================================================================
# 4. What the student reads: forged layers, internal errors, escapes, exotic tensors
# =========================================================================================

FORGES_SANDBOX_LAYERS = f'''\
import sys

# Rewrite what the worker knows about its sandbox, and the load reply that used to carry it.
_layers = sys.modules["autograder.worker.sandbox"].LAYERS
_layers.clear()
_layers.update({{"landlock": "on (ABI 99)", "forged_by_student": "on"}})
_runtime = sys.modules["autograder.worker.runtime"].Runtime
_send = _runtime.send


def _forged_send(self, reply, buffers):
    if "cells" in reply:  # the load reply now being sent
        reply["sandbox"] = {{"forged_by_student": "on", "landlock": "on (ABI 99)"}}
    return _send(self, reply, buffers)


_runtime.send = _forged_send


def softmax(x, dim=-1):
{SOFTMAX_RIGHT}    return result
'''


def check_forges_sandbox_layers(seen: Seen) -> None:
    every_test_reported(seen)
    layers = seen.report.sandbox
    assert "forged_by_student" not in layers, f"results.json carries the worker's forgery: {layers}"
    assert "ABI 99" not in layers.get("landlock", ""), f"results.json carries the worker's forgery: {layers}"
    on = {name: state.startswith("on") for name, state in layers.items()}  # uids differ from worker to worker
    honest = {name: state.startswith("on") for name, state in seen.honest_layers.items()}
    assert on == honest, f"the layers differ from an honest worker's:\n{layers}\n{seen.honest_layers}"


FORGES_LOAD_REPLY = f'''\
import sys

# The load reply the runner reads for its notes, rewritten into shapes the runtime never writes. (The reply
# of the load now running is built by the original op_load; what sends it is looked up afterwards.)
_runtime = sys.modules["autograder.worker.runtime"].Runtime
_send = _runtime.send


def _forged_send(self, reply, buffers):
    if "cells" in reply:
        reply["names"] = [["softmax"], {{"a": 1}}, *reply["names"]]
        reply["cells"] = [{{"index": [], "ok": False, "error": 5}}, {{"index": 3, "ok": False,
                          "error": {{"type": "E", "message": "m", "where": [{{"cell": 1}}]}}}}, *reply["cells"]]
    return _send(self, reply, buffers)


_runtime.send = _forged_send


def softmax(x, dim=-1):
{SOFTMAX_RIGHT}    return result
'''


def check_forges_load_reply(seen: Seen) -> None:
    # The malformed entries are dropped; everything is graded, and nothing is blamed on the grader.
    fails(seen, set(), "")
    assert not seen.report.internal_errors, seen.report.internal_errors[:1]


PATCHES_RUNTIME_FOR_INTERNAL_ERRORS = f'''\
import sys

# Every reply's args_after becomes a number: the hidden tests that read it crash inside the grader.
_runtime = sys.modules["autograder.worker.runtime"].Runtime
_call = _runtime.op_call


def _patched_call(self, header, buffers, out):
    reply = _call(self, header, buffers, out)
    reply["args_after"] = 7
    return reply


_runtime.op_call = _patched_call


def softmax(x, dim=-1):
{SOFTMAX_RIGHT}    return result
'''

HIDDEN = re.compile(r"autograder/suites|Traceback|\.py\"?, line \d+|a1_attention\.py")


def check_internal_errors_stay_with_the_instructor(seen: Seen) -> None:
    every_test_reported(seen)
    crashed = [t for t in seen.report.tests if "internal error" in t.output]
    assert crashed, "the patched replies should make some hidden test crash:\n" + table(seen.report)
    leaks = [text[:300] for text in student_visible(seen) if HIDDEN.search(text)]
    assert not leaks, f"hidden-suite paths or tracebacks in student-visible text: {leaks}"
    assert seen.report.internal_errors and any("a1_attention" in e for e in seen.report.internal_errors), \
        "the instructor should get the traceback"
    extra = json.loads(seen.results_json)["extra_data"]
    assert extra["internal_errors"] == seen.report.internal_errors


WRITES_ESCAPES = '''\
import sys


def merge_heads(x):
    print("\\x1b[2J\\x1b[H")
    sys.stdout.write("\\x1b]52;c;cHduZWQ=\\x07")
    raise ValueError("\\x1b[2J\\x1b[1;31mYOU PASSED\\x1b[0m\\x08\\x08\\x07")


print("\\x1b]0;owned\\x07\\x1b[2J")  # at the top level too, after merge_heads is defined
raise ValueError("\\x1b[31mred\\x1b[0m \\x9b2J \\x07 \\u202eevil")
'''


CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def check_writes_escapes(seen: Seen) -> None:
    fails(seen, USES_MERGE, "ValueError")
    assert any("did not run: ValueError" in d for d in seen.report.diagnostics), seen.report.diagnostics
    bad = [repr(text[:200]) for text in [*student_visible(seen), seen.results_json] if CONTROL.search(text)]
    assert not bad, f"control characters reached the report or results.json: {bad}"
    assert any("YOU PASSED" in t.output for t in seen.report.tests), "the message itself should still be shown"


RETURNS_COMPLEX = '''\
def softmax(x, dim=-1):
    e = (x - x.amax(dim=dim, keepdim=True)).exp()
    # The usage policy forbids torch.complex outright; reached by a computed name it only needs review, which
    # lenient grading lets run, so the grader's own rejection of the result is what this case tests.
    make = getattr(torch, "com" + "plex")
    return make(e / e.sum(dim=dim, keepdim=True), torch.zeros_like(e))  # right real part, imaginary 0
'''


def check_returns_complex(seen: Seen) -> None:
    every_test_reported(seen)
    expect_phrase(seen, {"softmax_keeps_shape", "softmax_matches_reference"}, "complex tensor")
    expect_phrase(seen, {"softmax_matches_reference"}, "Return a real")
    assert all(results(seen.report)[n].score == 0 for n in ("softmax_keeps_shape", "softmax_matches_reference"))


RETURNS_SPARSE = f'''\
def merge_heads(x):
{MERGE_RIGHT}    return getattr(result, "to_" + "sparse")()  # the right values, in a sparse layout \
(computed: see complex)
'''


def check_returns_sparse(seen: Seen) -> None:
    every_test_reported(seen)
    expect_phrase(seen, {"merge_heads_shape", "merge_heads_inverts_split"}, "sparse tensor")
    expect_phrase(seen, {"merge_heads_shape"}, ".to_dense()")
    assert all(results(seen.report)[n].score == 0 for n in ("merge_heads_shape", "merge_heads_inverts_split"))


RETURNS_QUANTIZED = '''\
def split_heads(x, n_heads):
    B, T, d_model = x.shape
    out = x.reshape(B, T, n_heads, d_model // n_heads).transpose(1, 2)
    quantize, qint32 = getattr(torch, "quantize_" + "per_tensor"), getattr(torch, "q" + "int32")  # see complex
    return quantize(out.float().contiguous(), 0.01, 0, qint32)
'''


def check_returns_quantized(seen: Seen) -> None:
    every_test_reported(seen)
    expect_phrase(seen, {"split_heads_shape", "split_heads_layout"}, "quantized tensor")
    expect_phrase(seen, {"split_heads_shape"}, ".dequantize()")
    assert all(results(seen.report)[n].score == 0 for n in USES_SPLIT if n.startswith("split"))


RETURNS_NESTED = '''\
def split_heads(x, n_heads):
    B, T, d_model = x.shape
    out = x.reshape(B, T, n_heads, d_model // n_heads).transpose(1, 2)
    nested = getattr(getattr(torch, "nes" + "ted"), "nested_" + "tensor")  # see complex
    return nested(list(out.contiguous().unbind(0)))
'''


def check_returns_nested(seen: Seen) -> None:
    every_test_reported(seen)
    expect_phrase(seen, {"split_heads_shape", "split_heads_layout"}, "nested tensor")


# =========================================================================================
# 5. Neighbours: a flood next to a correct submission, two graded at once
# =========================================================================================

FLOOD_IN_EVERY_CALL = _forger(NESTED_48_MIB).replace(
    "def merge_heads(x):\n    _forge()", "def merge_heads(x):\n    _forge()\n    _forge()")


def check_flood_next_to_a_correct_submission(seen: Seen) -> None:
    bounded(seen)
    neighbour = seen.neighbour
    assert neighbour is not None and neighbour.score == neighbour.max_score, (
        "the correct submission graded next to the flood lost points:\n" + table(neighbour))


CASES = [
    WorkerCase("nested_48_mib_header", {"merge_heads": NESTED_48_MIB_HEADER}, bounded),
    WorkerCase("flat_48_mib_header", {"merge_heads": FLAT_48_MIB_HEADER}, bounded),
    WorkerCase("many_values", {"merge_heads": MANY_VALUES}, bounded),
    WorkerCase("deep_but_small", {"merge_heads": DEEP_BUT_SMALL}, bounded),
    WorkerCase("million_buffers", {"merge_heads": MILLION_BUFFERS}, bounded),
    WorkerCase("huge_frame", {"merge_heads": HUGE_FRAME}, check_huge_frame),
    WorkerCase("top_level_sleep", {"softmax": TOP_LEVEL_SLEEP}, check_top_level_sleep, time_budget=SLEEP_BUDGET),
    WorkerCase("top_level_sleep_wrong", {"softmax": TOP_LEVEL_SLEEP_WRONG}, check_top_level_sleep_wrong,
               time_budget=SLEEP_WRONG_BUDGET),
    WorkerCase("os_exit_in_every_call", {"softmax": OS_EXIT_IN_EVERY_CALL}, check_os_exit_in_every_call),
    WorkerCase("sysv_shared_memory", {"merge_heads": SYSV_SHARED_MEMORY}, check_sysv_shared_memory),
    WorkerCase("reads_other_processes", {"merge_heads": READS_OTHER_PROCESSES}, check_reads_other_processes),
    WorkerCase("forges_sandbox_layers", {"softmax": FORGES_SANDBOX_LAYERS}, check_forges_sandbox_layers),
    WorkerCase("forges_load_reply", {"softmax": FORGES_LOAD_REPLY}, check_forges_load_reply),
    WorkerCase("patches_runtime_for_internal_errors", {"softmax": PATCHES_RUNTIME_FOR_INTERNAL_ERRORS},
               check_internal_errors_stay_with_the_instructor),
    WorkerCase("writes_escapes", {"merge_heads": WRITES_ESCAPES}, check_writes_escapes),
    WorkerCase("returns_complex", {"softmax": RETURNS_COMPLEX}, check_returns_complex),
    WorkerCase("returns_sparse", {"merge_heads": RETURNS_SPARSE}, check_returns_sparse),
    WorkerCase("returns_quantized", {"split_heads": RETURNS_QUANTIZED}, check_returns_quantized),
    WorkerCase("returns_nested", {"split_heads": RETURNS_NESTED}, check_returns_nested),
    WorkerCase("flood_next_to_a_correct_submission", {"merge_heads": FLOOD_IN_EVERY_CALL},
               check_flood_next_to_a_correct_submission, batch=True),
]
