"""The grading engine's own behaviour: wire format, notebook reading, CLI contract, workers."""

from __future__ import annotations

import json
import os
import pickle
import socket
import struct
import subprocess
import sys

import nbformat
import pytest
import torch

from autograder import wire
from autograder.notebook import definitions_only, read_submission, strip_magics
from tests.variants import REPO, by_name, solution_path, write_variant

pytestmark = pytest.mark.engine


# --- wire format -------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [
    torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.bool,
])
def test_tensors_cross_the_wire_exactly(dtype):
    value = (torch.randn(3, 4) * 10).to(dtype)
    buffers: list[bytes] = []
    header = {"v": wire.encode({"x": value, "pair": (value[0], None), "n": 3, "inf": float("inf")}, buffers)}
    got_header, got_buffers = wire.unpack(wire.pack(header, buffers)[8:])
    got = wire.decode(got_header["v"], got_buffers)
    assert got["x"].tensor.dtype == dtype and torch.equal(got["x"].tensor, value)
    assert isinstance(got["pair"], tuple) and got["pair"][1] is None
    assert got["n"] == 3 and got["inf"] == float("inf")


def test_wire_carries_no_code():
    """A pickle sent in place of a message is rejected as malformed; nothing is unpickled."""

    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    payload = pickle.dumps(Boom())
    with pytest.raises(wire.WireError):
        wire.unpack(struct.pack("<I", len(payload)) + payload)


def test_oversized_message_is_refused_before_reading():
    a, b = socket.socketpair()
    with a, b:
        a.sendall(struct.pack("<Q", 2**40))
        with pytest.raises(wire.WireError, match="exceeds"):
            wire.recv(b, max_bytes=2**20)


def test_subclass_and_foreign_values_are_labelled():
    class Liar(torch.Tensor):
        pass

    buffers: list[bytes] = []
    encoded = wire.encode([torch.ones(2).as_subclass(Liar), object()], buffers)
    sub, foreign = wire.decode(encoded, buffers)
    assert sub.type_name.endswith("Liar") and torch.equal(sub.tensor, torch.ones(2))
    assert isinstance(foreign, wire.Foreign) and foreign.type_name == "object"


# --- reading notebooks ---------------------------------------------------------------------

def test_magics_and_shell_escapes_are_stripped_keeping_line_numbers():
    src = "%matplotlib inline\n!pip install x\nx = 1\nsoftmax?\n"
    out = strip_magics(src)
    assert "pip" not in out and "matplotlib" not in out and out.splitlines()[2] == "x = 1"
    assert strip_magics("%%timeit\nx = 1\n") == ""


def test_only_definitions_run_from_non_exercise_cells():
    src = "import torch\nx = torch.randn(3)\nplt.plot(x)\nN = 4\n@decorate\ndef f():\n    return 1\n"
    kept = definitions_only(src).splitlines()
    assert kept[0] == "import torch" and kept[1] == kept[2] == "" and kept[3] == "N = 4"
    assert kept[4:] == ["@decorate", "def f():", "    return 1"]


def test_broken_notebooks_get_a_diagnosis(tmp_path):
    bad_json = tmp_path / "bad.ipynb"
    bad_json.write_text('{"cells": [')
    sub = read_submission(bad_json)
    assert not sub.readable and "not valid notebook JSON" in sub.diagnostics[0]
    too_deep = tmp_path / "deep.ipynb"  # a student's file, graded: "internal error", regrade asked, before
    too_deep.write_text("[" * 200_000 + "]" * 200_000)
    sub = read_submission(too_deep)
    assert not sub.readable and "nested too deeply" in sub.diagnostics[0]

    latin = tmp_path / "latin.ipynb"
    latin.write_bytes(solution_path("a1_attention").read_bytes().replace(b"Scaled", b"Scal\xe9d", 1))
    sub = read_submission(latin)
    assert sub.readable and any("not valid UTF-8" in d for d in sub.diagnostics)


@pytest.mark.filterwarnings("ignore::nbformat.warnings.DuplicateCellId")  # the duplicate is the point
def test_duplicated_cells_are_reported(tmp_path):
    nb = nbformat.read(solution_path("a1_attention"), as_version=4)
    first = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "softmax")
    nb.cells.append(nbformat.from_dict(dict(first)))
    path = tmp_path / "attention.ipynb"
    nbformat.write(nb, path)
    assert any("both claim grade_id 'softmax'" in d for d in read_submission(path).diagnostics)


# --- grading behaviour ---------------------------------------------------------------------

def test_solution_gets_full_marks(server):
    from autograder.runner import grade

    report = grade(solution_path("a1_attention"), server=server)
    assert [(t.name, t.output) for t in report.tests if not t.passed] == []
    assert report.score == report.max_score > 0
    assert report.sandbox.get("session") == "on"


def test_release_gets_zero_saying_not_implemented(server):
    from autograder.runner import grade

    report = grade(REPO / "assignments" / "a1_attention", server=server)
    assert report.score == 0
    assert {t.output for t in report.tests} == {"not implemented yet"}
    assert not report.diagnostics, report.diagnostics


def test_syntax_error_in_one_cell_spares_the_others(server, tmp_path):
    from autograder.runner import grade

    path = write_variant(
        "a1_attention", {"merge_heads": "def merge_heads(x):\n    return x.transpose(1, 2).reshape(\n"}, tmp_path)
    report = grade(path, server=server)
    tests = by_name(report)
    assert any("merge_heads" in d and "SyntaxError" in d for d in report.diagnostics)
    assert all(t.passed for t in report.tests if t.exercise == "softmax")
    assert not tests["merge_heads_shape"].passed
    assert "not defined" in tests["merge_heads_shape"].output


def test_regrade_is_reproducible_and_inputs_depend_on_submission(server, tmp_path):
    from autograder.runner import grade

    path = write_variant(
        "a1_attention",
        {"softmax": "def softmax(x, dim=-1):\n    return x.exp() / x.exp().sum(dim, keepdim=True)\n"},
        tmp_path,
    )
    first, second = grade(path, server=server), grade(path, server=server)
    assert first.seed == second.seed
    assert [t.output for t in first.tests] == [t.output for t in second.tests]
    assert grade(solution_path("a1_attention"), server=server).seed != first.seed


# --- command line --------------------------------------------------------------------------

def run_cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "autograder", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["grade", "no/such/notebook.ipynb"], "cannot read"),
    (["grade", "solutions/a1_attention", "--assignment", "a9_nothing"], "invalid choice"),
])
def test_cli_fails_with_one_clear_line_when_it_cannot_grade(args, message):
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_cli_grades_writes_gradescope_results_and_exits_zero(tmp_path):
    out = tmp_path / "results.json"
    proc = run_cli("grade", "assignments/a1_attention", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    assert results["score"] == 0 and results["execution_time"] > 0
    assert {"name", "score", "max_score", "status", "output", "visibility"} <= set(results["tests"][0])
    assert {t["status"] for t in results["tests"]} == {"failed"}
    assert "not implemented yet" in proc.stdout


def test_grader_builtins_build_and_observe_student_objects(server):
    """Stacks, optimizers and hooks are built in the worker, next to the student's modules."""
    from autograder.notebook import read_submission
    from autograder.session import RemoteModule, RemoteObject, Session

    program = read_submission(solution_path("a1_attention")).program()
    session = Session(server, program, seed=0, device="cpu", trace=[], time_limit=30)
    try:
        blocks = [session.call("MultiHeadAttention", 8, 2).value for _ in range(2)]
        stack = session.call({"builtin": "sequential"}, *blocks).value
        assert isinstance(stack, RemoteModule) and "1.out_proj.bias" in stack.parameters
        session.call({"builtin": "record_lengths"}, stack)
        x, g = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
        result = stack(x, grad={"wrt": [0], "grad_outputs": [g]})
        assert set(result.param_grads) == set(stack.parameters)
        assert session.call({"builtin": "recorded_lengths"}, stack).value == [5]
        opt = session.call({"builtin": "optimizer"}, stack, name="SGD", lr=1.0).value
        assert isinstance(opt, RemoteObject) and not isinstance(opt, RemoteModule)
        before = stack.parameters["0.q_proj.weight"].tensor.clone()
        opt.call_method("step")
        after = stack.parameters["0.q_proj.weight"].tensor
        assert torch.allclose(after, before - result.param_grads["0.q_proj.weight"].tensor)
    finally:
        session.close()


def test_a_dead_worker_server_is_restarted():
    """Should student code ever kill the server that forks workers, the next spawn starts a new one."""
    from autograder.runner import grade
    from autograder.worker.pool import WorkerServer

    with WorkerServer() as server:
        server.wait_ready()
        server.process.kill()
        server.process.wait()
        report = grade(solution_path("a1_attention"), server=server)
        assert report.score == report.max_score and server.restarts == 1


def test_the_worker_server_preloads_optimizers_only_when_an_assignment_may_need_them(tmp_path):
    """a5's train_step builds an optimizer (torch._dynamo, ~1 s to import); a batch of a1..a4 starts without it,
    and a path that names no assignment is taken to need it."""
    from autograder.cli import _needs_optimizers, parser

    def needs(*argv):
        return _needs_optimizers(parser().parse_args(["grade", *argv]))

    a1 = REPO / "examples" / "submissions" / "perfect" / "a1_attention"
    assert not needs(str(a1))
    assert needs(str(a1), str(REPO / "solutions" / "a5_transformer_lm"))
    assert needs(str(tmp_path))  # no assignment in the path: it might be a5
    assert not needs(str(tmp_path), "--assignment", "a4_residual_norm")
