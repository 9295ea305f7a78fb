"""Grading is device-agnostic: the worker runs student code on the session's device, objects the grader
builds in the worker (generators) are made there, and the grader replays random draws on that device.

This machine may have no GPU, so most tests prove the device is *passed through* rather than ignored: a
``meta`` session (tensors without values) or a missing CUDA device changes what comes back. The tests at
the end grade every reference solution on ``cuda`` where there is one.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from autograder.notebook import read_submission
from autograder.runner import GraderError, grade, resolve_device
from autograder.session import RemoteModule, Session, StudentRaised, WorkerLost
from autograder.suites import SUITES
from autograder.suites.a5_transformer_lm import sampling as a5
from autograder.wire import WireTensor
from autograder.worker import builtins_for_grader
from tests.variants import REPO, by_name, failures, solution_path

pytestmark = pytest.mark.engine

SUITES_DIR = REPO / "autograder" / "suites"
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def session_on(server, device: str, assignment: str = "a1_attention") -> Session:
    program = read_submission(solution_path(assignment)).program()
    return Session(server, program, seed=0, device=device, trace=[], time_limit=30)


# --- the generator builtin -------------------------------------------------------------------

def test_generator_builtin_on_cpu_is_the_plain_cpu_generator():
    """CPU grading stays bit-identical: the default and device="cpu" draw what torch.Generator() draws."""
    want = torch.rand(8, generator=torch.Generator().manual_seed(5))
    for g in (builtins_for_grader.generator(5), builtins_for_grader.generator(5, device="cpu")):
        assert g.device == torch.device("cpu")
        assert torch.equal(torch.rand(8, generator=g), want)


def test_generator_builtin_passes_its_device_to_torch():
    # meta has no generator: the error proves the device reached torch.Generator instead of being dropped
    with pytest.raises(RuntimeError, match="(?i)meta"):
        builtins_for_grader.generator(5, device="meta")


def test_generator_builtin_in_the_worker_honours_device(server):
    session = session_on(server, "cpu")
    try:
        made = session.call({"builtin": "generator"}, 5, device="cpu").value
        assert "Generator" in made.type_name
        with pytest.raises(StudentRaised, match="(?i)meta"):
            session.call({"builtin": "generator"}, 5, device="meta")
    finally:
        session.close()


# --- the a5 suite asks for its generators on the session's device and replays there -----------

def test_a5_asks_the_worker_for_a_generator_on_the_session_device():
    calls = []
    ctx = SimpleNamespace(session=SimpleNamespace(device="cuda:1"),
                          builtin=lambda name, *args, **kwargs: calls.append((name, args, kwargs)))
    a5.worker_generator(ctx, 42)
    assert calls == [("generator", (42,), {"device": "cuda:1"})]


def bigram_case():
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 6, generator=g, dtype=torch.float64), torch.randint(0, 6, (3, 2), generator=g)


def test_a5_replay_draws_on_the_given_device_and_returns_cpu_tokens():
    table, prompt = bigram_case()
    tokens = a5.sample_bigram(table, prompt, 5, 0.8, 3, seed=11, device="cpu")
    assert tokens.device == torch.device("cpu") and tokens.shape == (3, 7)
    assert torch.equal(tokens, a5.sample_bigram(table, prompt, 5, 0.8, 3, seed=11))  # the default is the CPU
    with pytest.raises(RuntimeError, match="(?i)meta"):
        a5.sample_bigram(table, prompt, 5, 0.8, 3, seed=11, device="meta")


def device_bound_builtins() -> set[str]:
    """Builtins that make something tied to a device: they take ``device``."""
    return {name for name, fn in inspect.getmembers(builtins_for_grader, inspect.isfunction)
            if fn.__module__ == builtins_for_grader.__name__ and "device" in inspect.signature(fn).parameters}


def builtin_calls(path: Path):
    """(line, builtin name, device keyword source or None) for every ``*.builtin("name", ...)`` call."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "builtin"
                and node.args and isinstance(node.args[0], ast.Constant)):
            device = next((ast.unparse(k.value) for k in node.keywords if k.arg == "device"), None)
            yield node.lineno, node.args[0].value, device


def test_suites_make_worker_objects_on_the_session_device():
    """Static: every call of a device-bound builtin in a hidden suite passes device=ctx.session.device."""
    bound = device_bound_builtins()
    assert "generator" in bound
    seen, wrong = 0, []
    for path in sorted(SUITES_DIR.glob("a*/*.py")):
        for line, name, device in builtin_calls(path):
            if name in bound:
                seen += 1
                if device is None or not device.endswith("session.device"):
                    wrong.append(f"{path.relative_to(SUITES_DIR)}:{line} builtin({name!r}) with device={device}")
    assert seen, "no suite calls a device-bound builtin: is this test still looking at the right thing?"
    assert not wrong, "worker objects made off the session's device:\n" + "\n".join(wrong)


# --- the worker runs on the session's device --------------------------------------------------

def test_worker_moves_inputs_and_modules_to_the_session_device(server):
    """A meta session returns meta tensors: inputs and student modules went to the session's device."""
    session = session_on(server, "meta")
    try:
        out = session.call("softmax", torch.randn(2, 3)).value
        assert isinstance(out, WireTensor) and out.device == "meta" and out.tensor is None
        mha = session.call("MultiHeadAttention", 8, 2).value
        assert isinstance(mha, RemoteModule)
        assert {p.device for p in mha.parameters.values()} == {"meta"}
        assert mha(torch.randn(2, 5, 8)).value.device == "meta"
    finally:
        session.close()


@no_cuda
def test_a_worker_without_its_device_fails_once_with_one_clear_line(server):
    session = session_on(server, "cuda")
    try:
        with pytest.raises(WorkerLost, match="cannot use device cuda") as first:
            session.call("softmax", torch.randn(2, 3))
        assert "\n" not in str(first.value)
        with pytest.raises(WorkerLost) as again:  # no second worker: the failure is remembered
            session.call("softmax", torch.randn(2, 3))
        assert str(again.value) == str(first.value) and session.worker is None
    finally:
        session.close()


class FakeWorker:
    """A worker that answers every request with ``reply``."""

    alive = True

    def __init__(self, reply: dict):
        self.reply, self.closed = reply, False

    def request(self, header, buffers=(), timeout=10.0):
        return self.reply, []

    def close(self):
        self.closed = True


CUDA_ASSERT = {"type": "RuntimeError", "message": "CUDA error: device-side assert triggered", "where": [], "output": ""}


@pytest.mark.parametrize("lost", [True, False])
def test_only_a_broken_gpu_context_costs_the_worker(lost):
    """A CUDA device-side assert is sticky: the exercise's next test gets a fresh worker. Other errors keep it."""
    session = Session(None, [], seed=0, device="cuda", trace=[], time_limit=5)
    session.use_worker_for("generate")
    session.worker = worker = FakeWorker({"ok": False, "error": CUDA_ASSERT, **({"device_lost": True} if lost else {})})
    with pytest.raises(StudentRaised, match="device-side assert"):
        session.call("generate")
    session.use_worker_for("generate")  # the same exercise's next test
    assert worker.closed is lost and (session.worker is None) is lost


# --- choosing the device ---------------------------------------------------------------------

def test_auto_picks_cuda_only_when_there_is_one():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(GraderError, match="--device gpu: not a device"):
        resolve_device("gpu")


@no_cuda
def test_cuda_without_a_gpu_is_a_grader_error():
    for device in ("cuda", "cuda:0", "cuda:1"):
        with pytest.raises(GraderError, match=f"^--device {device}: no CUDA device here$"):
            resolve_device(device)


@no_cuda
def test_grading_on_cpu_explicitly_equals_auto(server):
    """Without a GPU, auto is the CPU: same inputs, same verdicts, same feedback (a submission with bugs)."""
    path = REPO / "examples" / "submissions" / "partly_wrong" / "a1_attention"
    cpu, auto = grade(path, server=server, device="cpu"), grade(path, server=server, device="auto")
    assert 0 < cpu.score < cpu.max_score
    assert cpu.seed == auto.seed
    assert [(t.name, t.score, t.output) for t in cpu.tests] == [(t.name, t.score, t.output) for t in auto.tests]


@no_cuda
def test_cli_device_cuda_without_a_gpu_exits_2_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade", str(solution_path("a1_attention")),
                           "--device", "cuda", "--out", str(tmp_path / "results.json")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: --device cuda: no CUDA device here"], proc.stderr
    assert not (tmp_path / "results.json").exists()  # no report of zeros


# --- on a GPU: the reference solutions get full marks on cuda ----------------------------------

@needs_cuda
@pytest.mark.parametrize("assignment", list(SUITES))
def test_reference_solution_gets_full_marks_on_cuda(server, assignment):
    report = grade(solution_path(assignment), server=server, device="cuda")
    assert report.score == report.max_score > 0, f"lost points on cuda:\n{failures(report)}\n{report.diagnostics}"


@needs_cuda
def test_worker_results_come_from_the_gpu(server):
    session = session_on(server, "cuda")
    try:
        assert session.call("softmax", torch.randn(2, 3)).value.device.startswith("cuda")
        assert "Generator" in session.call({"builtin": "generator"}, 5, device="cuda").value.type_name
    finally:
        session.close()


OUT_OF_RANGE = ("import torch\ndef gather(t):\n    return torch.zeros(2, device=t.device)[t]\n"
                "def plus_one(t):\n    return t + 1\n")


@needs_cuda
def test_a_device_side_assert_costs_one_test_not_the_exercise(server):
    session = Session(server, [{"index": 0, "grade_id": None, "source": OUT_OF_RANGE}], seed=0, device="cuda",
                      trace=[], time_limit=30)
    try:
        session.use_worker_for("gather")
        with pytest.raises(StudentRaised):
            session.call("gather", torch.tensor([5]))  # out of range: a device-side assert on CUDA
        assert session.device_lost
        session.use_worker_for("gather")
        assert torch.equal(session.call("plus_one", torch.ones(2)).value.tensor, torch.full((2,), 2.0))
    finally:
        session.close()


@needs_cuda
def test_a5_sampling_is_judged_by_a_replay_on_the_gpu(server):
    """The sampling test passes on cuda, where a CPU replay would disagree with the student's CUDA draws."""
    table, prompt = bigram_case()
    cpu = a5.sample_bigram(table, prompt, 20, 1.0, None, seed=3, device="cpu")
    gpu = a5.sample_bigram(table, prompt, 20, 1.0, None, seed=3, device="cuda")
    assert gpu.device == torch.device("cpu") and not torch.equal(cpu, gpu)  # why the replay must run on the GPU
    report = grade(solution_path("a5_transformer_lm"), server=server, device="cuda")
    assert by_name(report)["generate_samples_with_the_generator"].passed, failures(report)
