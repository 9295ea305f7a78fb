"""Known-wrong implementations of each exercise, keyed by what the bug is ("attention scaled by 1/d_k").

One module per assignment. The hidden suites pass them to ``checks.expect_close(..., suspects=...)`` so a failure
says "your result matches <bug>"; the release notebooks' visible checks import the same functions (when the course
package is installed) so a student reads the same sentence before submitting. Public like ``policy.py``: it holds
no hidden test, only wrong answers, and student code may not import it (the usage policy's import allowlist).
"""

from __future__ import annotations

import torch


def matching_bug(got: torch.Tensor, suspects: dict[str, torch.Tensor], atol: float = 1e-5,
                 rtol: float = 1e-4) -> str | None:
    """The description of the first known-wrong result ``got`` equals, else None: masks exactly, values within
    ``atol + rtol * |suspect|`` (compared in float64 on the CPU; the default is float32's tolerance, so a float32
    result of a known bug is named too).

    Call it only on a result already known to be wrong: a suspect may coincide with the right answer for some
    inputs (a reshape without the transpose, when there is one head).
    """
    for bug, wrong in suspects.items():
        if tuple(got.shape) != tuple(wrong.shape):
            continue
        if got.dtype == torch.bool or wrong.dtype == torch.bool:
            if got.dtype == wrong.dtype and torch.equal(got.cpu(), wrong.cpu()):
                return bug
        elif torch.allclose(got.detach().cpu().double(), wrong.detach().cpu().double(), atol=atol, rtol=rtol):
            return bug
    return None
