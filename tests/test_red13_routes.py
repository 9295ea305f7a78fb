"""Second red-team pass on three speed changes (issue 11, point 6): the wire's fast path for dense CPU tensors,
modules left in place on the CPU, and batched grades.csv/results writes. Each test failed before its fix."""

from __future__ import annotations

import pytest
import torch

from autograder import wire


class _Sub(torch.Tensor):
    pass


def _negative_view() -> torch.Tensor:
    """A real tensor with torch's negative bit set: what ``.imag`` of a conjugated complex tensor is."""
    return torch.complex(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])).conj().imag


@pytest.mark.parametrize("kind", ["tensor", "parameter", "subclass"])
def test_a_negative_view_crosses_with_its_values(kind):
    """numpy() refuses a negative view, so the fast path fell back to the general one, which raised too: a right
    answer returned as ``z.conj().imag`` (RoPE written with complex numbers) failed in the worker with
    "Can't call numpy() on Tensor that has negative bit set". Before the fast path it crossed with its values."""
    tensor = _negative_view()
    tensor = {"tensor": tensor, "parameter": torch.nn.Parameter(tensor), "subclass": tensor.as_subclass(_Sub)}[kind]
    assert tensor.is_neg()
    buffers: list[bytes] = []
    decoded = wire.decode(wire.encode(tensor, buffers), buffers)
    assert torch.equal(decoded.tensor, torch.tensor([-3.0, -4.0]))


@pytest.mark.engine
def test_ctrl_c_after_a_printed_result_still_writes_it(server, tmp_path, monkeypatch):
    """A batch writes finished rows and results files at most once a second, and printed "results: <file>" for a
    submission still waiting to be written: Ctrl-C (here, raised while its report is printed) then lost it, where
    before every printed result was on disk. The loop now flushes on the way out, whatever ends it."""
    from autograder import cli, report
    from tests.test_resume import EXAMPLES, rows
    from tests.test_summary import run_grade

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli._FinishedWriter, "EVERY", 10**9)  # the once-a-second write has not come yet
    monkeypatch.setattr(report, "render", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_grade(server, [str(EXAMPLES / "perfect" / "a1_attention"), "--out-dir", str(out)])
    assert (out / "perfect-a1_attention.json").exists()
    assert rows(out / "grades.csv")["perfect"]["score"]
