"""Feedback that names the real bug: a failure an earlier failure explains says so, instead of a guess.

A gradient test that fails because the forward pass is already wrong, or multi-head attention that fails because
the student's softmax does, used to print a generic guess ("Is part of the computation detached?"). The grader
knows better: the earlier tests of the same exercise ran first, and the policy scan knows which other exercises
an exercise's code calls (``ScanResult.reaches``).
"""

from __future__ import annotations

from dataclasses import dataclass

from autograder.wire import shorten

NAMED = "Your result matches "


@dataclass(frozen=True)
class Failure:
    test: str
    title: str
    exercise: str
    group: str
    finding: str  # the message without its hint
    output: str  # what the student read

    @property
    def named_bug(self) -> str | None:
        """The known-wrong implementation the result matched ("attention scaled by 1/d_k ..."), if any."""
        return self.output.partition(NAMED)[2] or None

    @property
    def kind(self) -> str:
        return kind_of(self.finding)


def kind_of(finding: str) -> str:
    """What went wrong, coarsely: a NaN explains a NaN, a wrong value a wrong value, not one the other."""
    if "non-finite" in finding or "nan" in finding.split():
        return "non-finite"
    if " has shape " in finding:
        return "shape"
    if " raised " in finding:
        return "error"
    return "value"


def explanation(exercise: str, finding: str, earlier: list[Failure], reaches: list[str]) -> str | None:
    """Why a failing test of ``exercise`` probably failed, from what failed before it; None when nothing explains it.

    The same kind of failure (see ``kind_of``) first in an exercise this code calls, earliest in the course (the
    root cause: attention failing because softmax does), then in an earlier test of the same exercise. Hygiene
    failures (a modified input, a changed dtype) explain nothing else.
    """
    kind = kind_of(finding)
    candidates = [f for f in earlier if f.group != "hygiene" and f.kind == kind]
    called = [next(f for f in candidates if f.exercise == other) for other in reaches
              if any(f.exercise == other for f in candidates)]
    if called:
        first = called[0]
        cause = f"it matches {first.named_bug}" if first.named_bug else shorten(first.finding, 160)
        also = "".join(f"; {f.exercise}, which it calls too, also fails" for f in called[1:])
        return f"Probably the same bug as {first.exercise}, which this code calls: {cause}{also}"
    own = [f for f in candidates if f.exercise == exercise]
    named = next((f for f in own if f.named_bug), None)
    if named:
        return f"Probably the same bug as the test “{named.title}” above: your result matches {named.named_bug}"
    if own:
        return f"Probably the same bug as the test “{own[0].title}” above"
    return None


def joined(message: str, sentence: str) -> str:
    """Two sentences as one message: "Is it detached?. Probably" never."""
    message = message.rstrip()
    return f"{message} {sentence}" if message.endswith((".", "?", "!")) else f"{message}. {sentence}"
