"""The pytest plugin that grades one submission: pytest runs the hidden tests, this plugin gives each its worker.

Two ways in, one code path:

    python -m pytest autograder/suites/a1_attention --submission attention.ipynb   # an instructor, with -k, -x, --pdb
    python -m autograder grade attention.ipynb                                       # runner.grade() calls pytest.main

Per test, the plugin: gives the exercise its worker (``use_worker_for``: the last exercise's, reset, when all of
its tests passed; else a fresh one), starts the test's clock, builds the
``ctx`` fixture with the test's seed, and turns what the test raised into the line a student reads (a hint for a
known error, "not implemented yet", a lost worker). A test of an exercise that cannot earn points (forbidden use,
code given by the release, no readable notebook) fails at set-up with the reason. At the end it applies what needs
the whole run (the liveness rule, strict review) and leaves the ``GradeReport`` in ``plugin.report``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _pytest.reports import TestReport

from autograder import feedback, runner
from autograder.context import Context, seed_for_test
from autograder.hidden import MARKERS, HiddenTest, SuiteError, hidden_test_of
from autograder.session import CheckFailed, StudentRaised, WorkerLost
from autograder.suites import HERE as SUITES_DIR
from autograder.suites import load_suite

PLUGIN_NAME = "autograder-grading"


class GradingPlugin:
    """Grades one submission per pytest session, or, given ``batch`` (an iterator of (key, path)), each of them in
    turn in one session: pytest collects once, then runs its own test protocol on every item for each submission
    (``pytest_runtestloop``), and ``on_report(key, report, error)`` receives each result."""

    def __init__(self, path: Path | str | None, assignment: str, *, server=None, device: str = "cpu",
                 time_limit: float = runner.DEFAULT_TIME_LIMIT, time_budget: float | None = None,
                 strict: bool = True, batch: Iterator | None = None, on_report: Callable | None = None):
        self.spec = load_suite(assignment)
        self.options = {"server": server, "device": device, "time_limit": time_limit, "time_budget": time_budget,
                        "strict": strict}
        self.batch, self.on_report = batch, on_report
        self.finished = False
        self.only: set[str] | None = None  # run only these exercises' tests
        self.quiet = False  # graded by runner.grade(): no terminal, and pytest formats no traceback
        self._begin(Path(path) if path is not None else None)

    def _begin(self, path: Path | None) -> None:
        """A new submission: its own grading state, report and memory of failures."""
        self.grading = runner.Grading(path or Path(), self.spec, **self.options)
        self.report = self.grading.report
        self.failures: list[feedback.Failure] = []  # earlier failures, which may explain later ones

    # --- the run -----------------------------------------------------------------------

    def pytest_sessionstart(self, session) -> None:
        if self.batch is None:
            self.grading.start()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session) -> bool | None:
        """With a batch: every submission in turn through pytest's own protocol for each collected test."""
        if self.batch is None:
            return None
        assert self.on_report is not None
        items = session.items
        for key, path in self.batch:
            self._begin(Path(path))
            try:
                self.grading.start()
            except runner.GraderError as exc:
                self.on_report(key, None, str(exc))
                continue
            for i, item in enumerate(items):
                item.__dict__.pop("_grade", None)  # the previous submission's outcome
                item.config.hook.pytest_runtest_protocol(item=item, nextitem=items[i + 1] if i + 1 < len(items)
                                                         else None)
            self._complete()
            self.on_report(key, self.report, None)
        return True

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, session, config, items) -> None:
        """Every collected test is a hidden test of this assignment, run exercise by exercise."""
        rank = {e: i for i, e in enumerate(self.spec.exercises)}
        if self.only is not None:
            dropped = [item for item in items if _hidden_test(item).exercise not in self.only]
            items[:] = [item for item in items if _hidden_test(item).exercise in self.only]
            config.hook.pytest_deselected(items=dropped)
        for item in items:
            test = _hidden_test(item)
            if test.exercise not in rank:
                raise SuiteError(f"{item.nodeid}: exercise {test.exercise!r} is not one of {self.spec.name}'s")
            item.add_marker(self.spec.name)  # so `-m a1_attention` selects it
        items.sort(key=lambda item: rank[_hidden_test(item).exercise])

    @pytest.fixture
    def ctx(self, request) -> Context:
        """The proxy to the student's code, for one hidden test."""
        test = _hidden_test(request.node)
        reason = self.grading.why_not_graded(test.exercise)
        if reason:
            request.node._grade = (0.0, reason)
            pytest.fail(reason, pytrace=False)  # a set-up failure whose message is the reason, no traceback
        session = self.grading.session
        assert session is not None  # why_not_graded said the notebook is readable: start() made the session
        session.use_worker_for(test.exercise, fresh=test.exercise in self.spec.judges)
        session.begin_test(test.time_limit)
        return Context(session, self.spec, test, seed_for_test(self.report.seed, test.name), log=self.grading.log)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        """The test's outcome, decided where its exception is still at hand. While grading (threads), a failure
        goes on as a plain ``pytest.fail`` so that pytest never formats a traceback (see autograder/parsing.py)."""
        try:
            result = yield
        except Exception as exc:  # noqa: BLE001  (whatever a test raises is judged by _outcome)
            item._grade = self._outcome(_hidden_test(item), exc)
            if self.quiet or not _is_known(exc):
                raise pytest.fail.Exception(item._grade[1], pytrace=False) from None
            raise
        item._grade = (_hidden_test(item).points, "")
        return result

    @pytest.hookimpl(tryfirst=True, specname="pytest_runtest_makereport")
    def pytest_runtest_makereport_plain(self, item, call):
        """While grading, a plain report: the message is decided already (``_grade``), and pytest's own report would
        walk the traceback's files for every failure (most of the time of a session of failing tests)."""
        if not self.quiet:
            return None
        failed = call.excinfo is not None
        return TestReport(item.nodeid, (item.nodeid, None, item.name), {}, "failed" if failed else "passed",
                          getattr(item, "_grade", (0.0, "failed"))[1] if failed else None, call.when,
                          duration=call.duration, start=call.start, stop=call.stop)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        if call.when == "teardown" or (call.when == "setup" and call.excinfo is None):
            return report
        test = _hidden_test(item)
        # No grade: a set-up failure of the suite's own fixtures, or an interrupt: never points.
        score, output = getattr(item, "_grade", None) or (0.0, self._internal(test, call.excinfo))
        self.grading.record(test, score, output)
        report.user_properties.append(("feedback", output))
        if call.excinfo is not None and _tbstyle(item) in ("auto", "short"):
            report.longrepr = f"{test.display_name}\n{output}"  # what the student reads; --tb=long keeps the trace
        return report

    def pytest_sessionfinish(self, session) -> None:
        if self.batch is None:
            self._complete()
        self.finished = True

    def _complete(self) -> None:
        """What needs the whole run of one submission, then its report is final."""
        if self.quiet:  # a grade covers the whole suite: a test pytest never ran scores 0, it does not vanish
            ran = {t.name for t in self.report.tests}
            for test in self.spec.tests:
                if test.name not in ran and (self.only is None or test.exercise in self.only):
                    self.grading.internal_error(test.name, RuntimeError("pytest stopped before this test ran"))
                    self.grading.record(test, 0.0, "not run: the grader stopped early (internal error); "
                                                   "your instructor has the details")
            order = {t.name: i for i, t in enumerate(self.spec.tests)}
            self.report.tests.sort(key=lambda r: order.get(r.name, len(order)))
        self.grading.finish()

    def pytest_terminal_summary(self, terminalreporter) -> None:
        from autograder.report import render

        terminalreporter.write_line("")
        terminalreporter.write_line(render(self.report, color=terminalreporter.isatty))
        out = terminalreporter.config.getoption("results", None)
        if out:
            from autograder.report import write_results

            write_results(self.report, Path(out))
            terminalreporter.write_line(f"results: {out}")

    # --- one test's outcome ------------------------------------------------------------

    def _outcome(self, test: HiddenTest, exc: Exception) -> tuple[float, str]:
        if isinstance(exc, StudentRaised):
            if exc.not_implemented:
                return 0.0, "not implemented yet"
            hint = self.spec.hint_for_error(test.exercise, exc.error)
            return 0.0, self._remember(test, exc, f"{exc}. {hint}" if hint else str(exc))
        if isinstance(exc, WorkerLost):
            if self.grading.session is not None:
                self.grading.session.drop_worker()
            return 0.0, str(exc)
        if isinstance(exc, CheckFailed):
            output = str(exc)
            if not exc.named:  # a guess gives way to what an earlier failure shows; a plain message gains it
                reaches = self.grading.reaches(test.exercise)
                cause = feedback.explanation(test.exercise, exc.finding, self.failures, reaches)
                if cause:
                    output = feedback.joined(exc.finding if exc.guess else output, cause)
            return 0.0, self._remember(test, exc, output)
        return 0.0, self._internal(test, exc)

    def _internal(self, test: HiddenTest, exc) -> str:
        """A bug in the hidden test, or a reply it did not expect: fail, never award points; the details go to the
        instructor only."""
        exc = getattr(exc, "value", exc)  # an ExceptionInfo, from makereport
        self.grading.internal_error(test.name, exc)
        return "the grader could not run this test (internal error); your instructor has the details"


    def _remember(self, test: HiddenTest, exc: CheckFailed, output: str) -> str:
        self.failures.append(feedback.Failure(test.name, test.title, test.exercise, test.group, exc.finding, output))
        return output


def _tbstyle(item) -> str:
    return getattr(item.config.option, "tbstyle", "auto")


def _is_known(exc: BaseException) -> bool:
    return isinstance(exc, CheckFailed)


def _hidden_test(item) -> HiddenTest:
    test = getattr(item, "_hidden_test", None)
    if test is None:
        test = item._hidden_test = hidden_test_of(item.obj, item.nodeid)
    return test


# --- for `python -m pytest autograder/suites/<assignment> --submission ...` (suites/conftest.py, options.py) ---

def add_options(parser) -> None:
    group = parser.getgroup("autograder", "grading one submission with a hidden suite")
    group.addoption("--submission", help="the notebook (or a submission folder) to grade")
    group.addoption("--device", default="cpu", help="where the student's code runs: cpu, cuda, auto (default cpu)")
    group.addoption("--time-limit", type=float, default=runner.DEFAULT_TIME_LIMIT, help="seconds per hidden test")
    group.addoption("--time-budget", type=float, default=None, help="seconds for the whole submission")
    group.addoption("--lenient", action="store_true", help="code that needs review keeps its points")
    group.addoption("--results", help="also write results.json here")


def configure(config) -> None:
    """Register the markers; start grading the --submission, unless runner.grade() brought its own plugin."""
    for line in MARKERS.values():
        config.addinivalue_line("markers", line)
    from autograder.suites import ORDER

    for name in ORDER:
        config.addinivalue_line("markers", f"{name}: hidden tests of {name}")
    if any(isinstance(p, GradingPlugin) for p in config.pluginmanager.get_plugins()):
        return  # runner.grade() brought its own
    submission = config.getoption("submission")
    if not submission:
        raise pytest.UsageError("a hidden suite grades one notebook: pass --submission PATH.ipynb")
    assignment = _assignment_of_args(config)
    device = runner.resolve_device(config.getoption("device"))
    config.pluginmanager.register(
        GradingPlugin(submission, assignment, device=device, time_limit=config.getoption("time_limit"),
                      time_budget=config.getoption("time_budget"), strict=not config.getoption("lenient")),
        PLUGIN_NAME)


def _assignment_of_args(config) -> str:
    from autograder.suites import ORDER

    named = {part for arg in config.args for part in Path(arg.split("::")[0]).resolve().parts if part in ORDER}
    if len(named) != 1:
        raise pytest.UsageError("run one assignment's suite at a time (autograder/suites/<assignment>); "
                                f"got {config.args}")
    return named.pop()


def run(plugin: GradingPlugin, exercises: list[str] | None = None) -> None:
    """Run the hidden suite through pytest, quietly and without touching process-wide state (several submissions
    are graded at once, in threads): no output capture, assertion rewriting, warning or log capture.
    ``exercises``: only these exercises' tests (``-m "exercise(...)"`` has no such selection)."""
    plugin.only = set(exercises) if exercises is not None else None
    plugin.quiet = True
    from autograder.suites import options

    args = [str(SUITES_DIR / plugin.spec.name), "-c", str(SUITES_DIR / "grading.ini"),
            "--rootdir", str(Path(__file__).resolve().parents[1]),
            "-s", "--assert=plain", "--disable-plugin-autoload"]
    # pytest's plugins that touch process-wide state, or that grading never uses (each costs time per session)
    for name in ("terminal", "cacheprovider", "stepwise", "warnings", "logging", "faulthandler",
                 "unraisableexception", "threadexception", "junitxml", "pastebin", "doctest", "legacypath", "tmpdir",
                 "monkeypatch", "recwarn", "setuponly", "setupplan", "debugging", "skipping", "python_path",
                 "pytester", "unittest"):
        args += ["-p", f"no:{name}"]
    code = pytest.main(args, plugins=[plugin, options])
    if not plugin.finished or code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        raise SuiteError(f"the hidden suite of {plugin.spec.name} did not run (pytest exit code {int(code)})")
