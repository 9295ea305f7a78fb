"""How a hidden suite is declared: a package of pytest modules, one ``Assignment`` and marked test functions.

    autograder/suites/a1_attention/__init__.py     ASSIGNMENT = Assignment("a1_attention", "attention.ipynb", [...])
    autograder/suites/a1_attention/test_softmax.py

    @hidden("softmax", points=1, group="shapes")
    def test_softmax_keeps_shape(ctx):
        '''returns the input's shape, for any dim'''       # the first docstring line is the title students read

``hidden`` puts pytest markers on the function (``exercise``, ``points``, ``group`` and, when given,
``time_limit``), so ``pytest -m``, ``-k`` and ``--collect-only`` see them; the ``ctx`` fixture
(``autograder/plugin.py``) is the proxy to the student's worker. What each exercise may use:
``autograder/policy.py``. The step-by-step guide: ``docs/authoring.md``.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from functools import cached_property

import pytest

GROUPS = ("shapes", "numerics", "properties", "gradients", "hygiene")
MARKERS = {
    "exercise": "exercise(name): the exercise (nbgrader grade id) a hidden test grades",
    "points": "points(n): what a hidden test is worth",
    "group": "group(name): shapes, numerics, properties, gradients or hygiene",
    "time_limit": "time_limit(seconds): this hidden test's time limit, instead of the grader's default",
}


class SuiteError(Exception):
    """A hidden suite is declared wrongly (a bug of the suite's author, never of a student)."""


def hidden(exercise: str, *, points: float, group: str, time_limit: float | None = None):
    """Mark a hidden test: which exercise it grades, what it is worth, which group it belongs to."""
    if group not in GROUPS:
        raise SuiteError(f"unknown group {group!r}: use one of {', '.join(GROUPS)}")
    if points <= 0:
        raise SuiteError(f"points must be positive, got {points!r}")
    marks = [pytest.mark.exercise(exercise), pytest.mark.points(points), pytest.mark.group(group)]
    if time_limit is not None:
        marks.append(pytest.mark.time_limit(time_limit))

    def mark(fn):
        if not fn.__name__.startswith("test_"):
            raise SuiteError(f"{fn.__name__}: a hidden test's name starts with test_, or pytest never collects it")
        for m in marks:
            fn = m(fn)
        return fn

    return mark


@dataclass(frozen=True)
class HiddenTest:
    """One hidden test as a grade line: ``name`` is the function's name without ``test_`` (it also seeds the
    test's inputs, so renaming a test changes them)."""

    name: str
    title: str
    exercise: str
    group: str
    points: float
    time_limit: float | None = None

    @property
    def display_name(self) -> str:
        return f"{self.exercise}: {self.title}"


def hidden_test_of(fn, nodeid: str = "") -> HiddenTest:
    """The grade line of a marked test function; a SuiteError when a marker is missing or twice."""
    marks: dict[str, list] = {}
    for m in getattr(fn, "pytestmark", []):
        marks.setdefault(m.name, []).append(m)
    where = nodeid or fn.__name__
    for name in ("exercise", "points", "group"):
        if len(marks.get(name, [])) != 1:
            raise SuiteError(f"{where}: a hidden test needs exactly one {name} marker (use @hidden(...))")
    if "parametrize" in marks:
        raise SuiteError(f"{where}: hidden tests are not parametrized (each is one grade line); loop inside it")
    limit = marks.get("time_limit")
    title = (fn.__doc__ or fn.__name__).strip().splitlines()[0]
    return HiddenTest(fn.__name__.removeprefix("test_"), title, marks["exercise"][0].args[0],
                      marks["group"][0].args[0], marks["points"][0].args[0], limit[0].args[0] if limit else None)


# (exercise or None for any, parts of the error message, hint): likely causes of errors the student's code raises.
ErrorHint = tuple[str | None, tuple[str, ...], str]


@dataclass
class Assignment:
    """One assignment's hidden suite: the package ``autograder.suites.<name>``, its notebook and exercises."""

    name: str
    notebook: str
    exercises: list[str]
    error_hints: list[ErrorHint] = field(default_factory=list)
    # Exercises whose code another exercise's tests run as a judge, in a worker of its own (``ctx.worker_of_its_own``):
    # their own tests start on a fresh worker too, or code that knows a kept worker from a fresh one (a flag an
    # earlier exercise's tests set) could pass its own tests and tell the judge something else.
    judges: list[str] = field(default_factory=list)

    @property
    def assignment(self) -> str:
        return self.name

    @property
    def package(self) -> str:
        return f"autograder.suites.{self.name}"

    @cached_property
    def tests(self) -> list[HiddenTest]:
        """Every hidden test in the package's ``test_*`` modules, in course order: by exercise, then as declared."""
        package = importlib.import_module(self.package)
        found = []
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            if not info.name.startswith("test_"):
                continue
            module = importlib.import_module(f"{self.package}.{info.name}")
            for name, fn in vars(module).items():
                if name.startswith("test_") and callable(fn) and getattr(fn, "__module__", "") == module.__name__:
                    found.append(hidden_test_of(fn, f"{info.name}.py::{name}"))
        self._check(found)
        rank = {e: i for i, e in enumerate(self.exercises)}
        return sorted(found, key=lambda t: rank[t.exercise])

    def _check(self, tests: list[HiddenTest]) -> None:
        names = [t.name for t in tests]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise SuiteError(f"{self.name}: test names used twice ({', '.join(twice)}): names seed the inputs")
        unknown = sorted({t.exercise for t in tests} - set(self.exercises))
        if unknown:
            raise SuiteError(f"{self.name}: tests of unknown exercises {unknown}; its exercises: {self.exercises}")
        untested = [e for e in self.exercises if e not in {t.exercise for t in tests}]
        if untested:
            raise SuiteError(f"{self.name}: no hidden test for {', '.join(untested)}")

    def test(self, name: str) -> HiddenTest:
        return next(t for t in self.tests if t.name == name)

    @property
    def max_score(self) -> float:
        return sum(t.points for t in self.tests)

    def hint_for_error(self, exercise: str, error: dict) -> str | None:
        """The hint for the test's own exercise first, then for a function on the traceback, then a generic one."""
        functions = {w.get("function") for w in error.get("where") or []}
        message = error.get("message") or ""
        matching = [(where, hint) for where, parts, hint in self.error_hints if any(p in message for p in parts)]
        for accept in (lambda w: w == exercise, lambda w: w in functions, lambda w: w is None):
            for where, hint in matching:
                if accept(where):
                    return hint
        return None
