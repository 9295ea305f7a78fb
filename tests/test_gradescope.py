"""The Gradescope autograder package (issue 11, autograder/gradescope.py): what the zip holds and leaves out,
and `run_autograder` grading a perfect, a wrong and a broken submission in a fake /autograder root, under
Docker's default capabilities (setpriv), into Gradescope's results path with the visibility chosen.

Under those capabilities the workers get no namespaces (no CAP_SYS_ADMIN) but must keep Landlock, seccomp, rlimits
and no capability; a uid of their own too when other users can read this Python, as setup.sh makes it on
Gradescope (measured with setup.sh's own /opt-style environment: `unprivileged_uid: on`). On this machine Python
lives under /root (mode 700) and without CAP_SYS_ADMIN it cannot be unmasked, so there the uid layer is off.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from autograder.gradescope import VISIBILITIES, build
from autograder.suites import SUITES
from tests.variants import REPO

pytestmark = pytest.mark.engine
ASSIGNMENT = "a1_attention"
VISIBILITY = "after_published"  # not the default: results.json must carry the one chosen
EXAMPLES = REPO / "examples" / "submissions"
# Docker's default capability set (moby's oci/caps/defaults.go); setpriv drops every other one.
DOCKER_CAPS = ("chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
               "net_bind_service", "net_raw", "sys_chroot", "mknod", "audit_write", "setfcap")
REQUIRED = ("setup.sh", "run_autograder", "pyproject.toml", "README.md", "constraints.txt", "scripts/setup-env.sh",
            "autograder/cli.py", "autograder/reference.py", "autograder/policy.py", "autograder/release.py",
            "autograder/worker/sandbox.py", "autograder/suites/conftest.py", "autograder/suites/pytest.ini",
            *(f"autograder/suites/{a}/__init__.py" for a in SUITES),
            *(f"autograder/known_bugs/{a}.py" for a in SUITES))


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    return build(ASSIGNMENT, tmp_path_factory.mktemp("zip"), VISIBILITY)


def unpack(package: Path, source: Path) -> None:
    """Unpack as Gradescope does, keeping the executable bits."""
    with zipfile.ZipFile(package) as archive:
        for info in archive.infolist():
            path = Path(archive.extract(info, source))
            path.chmod(info.external_attr >> 16 & 0o777)


def start_autograder(root: Path, python: str = sys.executable) -> subprocess.Popen:
    """Gradescope's ``run_autograder`` in the fake root ``root``, as root with Docker's capabilities only."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(AUTOGRADER_ROOT=str(root), AUTOGRADER_PYTHON=python)
    caps = ",".join(f"+{c}" for c in DOCKER_CAPS)
    argv = [str(root / "source" / "run_autograder")]
    if shutil.which("setpriv") and os.geteuid() == 0:
        argv = ["setpriv", f"--bounding-set=-all,{caps}", "--inh-caps=-all", *argv]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def roots():
    """A fake /autograder per call, in /tmp as Gradescope's is under /: others may pass through it (pytest's own
    temporary folders are mode 700, which would hide the package, and so Python, from the workers' uids)."""
    made: list[Path] = []

    def make(name: str) -> Path:
        made.append(Path(tempfile.mkdtemp(prefix=f"gradescope-{name}-")))
        made[-1].chmod(0o755)
        return made[-1]

    yield make
    for root in made:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def graded(package, roots) -> dict[str, dict]:
    """results.json of each example submission, graded by run_autograder in a fresh fake /autograder."""
    notebooks = {name: EXAMPLES / name / ASSIGNMENT / "attention.ipynb" for name in ("perfect", "partly_wrong",
                                                                                      "broken_json")}
    notebooks["a2_release"] = REPO / "assignments" / "a2_masking" / "masking.ipynb"  # another assignment's
    runs = {}
    for name, notebook in notebooks.items():  # all at once, as Gradescope runs its containers
        root = roots(name)
        unpack(package, root / "source")
        (root / "submission").mkdir()
        shutil.copy(notebook, root / "submission")
        runs[name] = root, start_autograder(root)
    results = {}
    for name, (root, process) in runs.items():
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
        results[name] = json.loads((root / "results" / "results.json").read_text())
    return results


def test_the_zip_holds_what_grading_needs(package):
    names = set(zipfile.ZipFile(package).namelist())
    assert set(REQUIRED) <= names
    releases = {p.relative_to(REPO).as_posix() for p in (REPO / "assignments").glob("*/*.ipynb")}
    assert releases == {n for n in names if n.endswith(".ipynb")}  # every release (matching), nothing else


def test_the_zip_holds_no_solution_catalog_or_example(package):
    archive = zipfile.ZipFile(package)
    names = archive.namelist()
    for name in names:
        assert not re.match(r"(solutions|tests|examples|lectures|results|\.git)/", name), name
        assert Path(name).name not in ("gradebook.db", "results.json", "grades.csv"), name
    contents = [archive.read(n).decode("utf-8", "replace") for n in names]
    for notebook in (REPO / "solutions").glob("*/*.ipynb"):
        for block in solution_blocks(notebook):
            assert not any(block in text for text in contents), f"{notebook.name}'s solution is in the zip: {block}"


def solution_blocks(notebook: Path) -> list[str]:
    """The code between ### BEGIN SOLUTION and ### END SOLUTION in a solution notebook."""
    cells = json.loads(notebook.read_text())["cells"]
    sources = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells]
    found = re.findall(r"### BEGIN SOLUTION\n(.*?)\n\s*### END SOLUTION", "\n".join(sources), re.S)
    return [block.strip() for block in found if len(block.strip()) > 40]


def test_the_scripts_reuse_the_one_setup(package):
    archive = zipfile.ZipFile(package)
    setup = archive.read("setup.sh").decode()
    assert "scripts/setup-env.sh" in setup and "chmod -R a+rX" in setup
    assert not re.search(r"torch\s*==", setup)  # the version is pinned once, in scripts/setup-env.sh
    script = archive.read("run_autograder").decode()
    assert f"ASSIGNMENT={ASSIGNMENT}\n" in script and f"VISIBILITY={VISIBILITY}\n" in script
    modes = {i.filename: i.external_attr >> 16 & 0o777 for i in archive.infolist()}
    assert modes["run_autograder"] == modes["setup.sh"] == 0o755


def test_a_perfect_submission_gets_full_marks(graded):
    results = graded["perfect"]
    assert results["score"] == results["extra_data"]["max_score"] > 0
    assert all(t["status"] == "passed" for t in results["tests"])


def test_a_partly_wrong_submission_names_its_failures(graded):
    results = graded["partly_wrong"]
    assert 0 < results["score"] < results["extra_data"]["max_score"]
    failed = [t for t in results["tests"] if t["status"] == "failed"]
    assert failed and all(t["name"] and t["output"] for t in failed)


def test_a_broken_notebook_scores_zero_and_says_why(graded):
    results = graded["broken_json"]
    assert results["score"] == 0
    assert "not valid notebook JSON" in results["output"]


def test_another_assignments_notebook_is_recognised_from_the_zips_releases(graded):
    results = graded["a2_release"]
    assert results["score"] == 0 and "a2_masking's notebook" in results["output"], results["output"]


def test_grade_writes_visible_unless_told_otherwise():
    from autograder.cli import parser
    from autograder.report import gradescope
    from autograder.runner import GradeReport

    assert parser().parse_args(["grade", "x.ipynb"]).visibility == "visible"
    report = GradeReport(assignment=ASSIGNMENT, submission="x.ipynb", notebook=None)
    assert gradescope(report)["visibility"] == "visible"
    assert gradescope(report, "hidden")["visibility"] == "hidden"


def test_results_carry_the_visibility_chosen(graded):
    assert VISIBILITY in VISIBILITIES
    for results in graded.values():
        assert results["visibility"] == VISIBILITY and results["stdout_visibility"] == "hidden"
        assert {t["visibility"] for t in results["tests"]} == {VISIBILITY}


def test_the_sandbox_holds_under_dockers_default_capabilities(graded):
    layers = graded["perfect"]["extra_data"]["sandbox"]
    assert layers["landlock"].startswith("on") and layers["no_new_processes"].startswith("on"), layers
    assert layers["rlimit_nproc"] == "on" and layers["session"] == "on"
    if os.geteuid() == 0 and shutil.which("setpriv"):
        assert layers["namespaces"].startswith("off")  # setpriv really took CAP_SYS_ADMIN away, as Docker does
        if all(others_can_enter(p) for p in {sys.prefix, sys.base_prefix}):  # as setup.sh makes it on Gradescope
            assert layers["unprivileged_uid"].startswith("on"), layers
        else:  # a pyenv under /root (this machine): no uid of its own, but no capability either
            assert layers["capabilities_dropped"] == "on", layers


def others_can_enter(folder: str) -> bool:
    """Whether every folder down to ``folder`` lets other users through (mode o+x)."""
    path = Path(folder).resolve()
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents])


def test_results_json_is_written_even_when_the_grader_cannot_run(package, roots):
    root = roots("no_submission")
    unpack(package, root / "source")  # no submission folder at all: the grader refuses with one line
    process = start_autograder(root)
    process.communicate(timeout=600)
    assert process.returncode == 0
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 0 and results["output"].startswith("Not graded: cannot read")
    assert results["visibility"] == VISIBILITY


def test_the_dockerfile_builds_the_same_environment():
    """Not built here (no Docker daemon): it starts from the official image, copies only files that exist and
    that the zip is made of, and runs the zip's setup.sh."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    copies = re.findall(r"^COPY (.+) \S+$", dockerfile, re.M)
    sources = [s for line in copies for s in line.split()]
    assert sources and all((REPO / s).exists() for s in sources), sources
    assert not any(s.split("/")[0] in ("solutions", "tests", "examples", "lectures", ".") for s in sources)
    assert "python -m autograder gradescope" in dockerfile and "bash /autograder/source/setup.sh" in dockerfile
    assert 'ENTRYPOINT ["/autograder/run_autograder"]' in dockerfile
    rules = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert rules[0] == "*"  # the build context is only what the rules let back in
    allowed = [rule[1:] for rule in rules if rule.startswith("!")]
    assert all(any(s == a or s.startswith(a + "/") for a in allowed) for s in sources), (sources, allowed)


def test_a_grader_that_cannot_sandbox_leaves_no_score(package, roots, tmp_path):
    """Exit status 3 (this container cannot sandbox student code) or a crash is the grader's fault: run_autograder
    leaves no results.json, so Gradescope shows an autograder failure to regrade, never a 0. The grader is a stub
    here that exits as the preflight does; the preflight itself is tested in tests/test_environment.py."""
    root = roots("no_sandbox")
    unpack(package, root / "source")
    (root / "submission").mkdir()
    stub = tmp_path / "python"
    stub.write_text("#!/bin/sh\necho 'error: cannot sandbox student code here: missing landlock' >&2\nexit 3\n")
    stub.chmod(0o755)
    process = start_autograder(root, python=str(stub))
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 3
    assert "cannot sandbox student code here" in stderr
    assert not (root / "results" / "results.json").exists()


def test_setup_sh_closes_the_reference_solutions_to_a_workers_uid(tmp_path):
    """Simulates Gradescope on a kernel without Landlock, where only the files' modes keep a worker's uid of its own
    out: the zip unpacked as Gradescope does, then setup.sh's own chmod line. Before: it closed autograder/suites
    only, and uid 65534 read /autograder/source/autograder/reference.py (float64 solutions of every exercise) and
    known_bugs/ (and a5's release, whose read-only cells hold a1's
    solutions) while `course_folders_hidden` said "on"; a worker can print a file 300 characters per failed test."""
    from autograder import gradescope
    from autograder.worker import sandbox

    source = Path(tempfile.mkdtemp(dir="/tmp")) / "source"  # every parent open to others, as /autograder is
    try:
        source.parent.chmod(0o755)
        with zipfile.ZipFile(gradescope.build("a1_attention", tmp_path / "a1.zip")) as archive:
            archive.extractall(source)
        setup = (source / "setup.sh").read_text().splitlines()
        closing: list[str] = []
        for line in setup:  # the chmod line and its continuations
            if line.startswith("chmod -R o-rwx") or closing and closing[-1].endswith("\\"):
                closing.append(line)
        assert closing, "setup.sh no longer closes the hidden files"
        subprocess.run(["bash", "-c", "\n".join(closing)], env={"SOURCE": str(source)}, check=True)
        hidden = [source / "autograder" / "reference.py", source / "autograder" / "known_bugs" / "a1_attention.py",
                  source / "autograder" / "suites" / "a1_attention" / "test_softmax.py",
                  source / "assignments" / "a5_transformer_lm" / "transformer_lm.ipynb"]  # a1's solutions in it
        assert [p for p in hidden if p.exists() and not sandbox._closed_to_others(p)] == []
        original = sandbox.PACKAGE_ROOT
        sandbox.PACKAGE_ROOT = source
        try:
            assert "autograder/reference.py" in sandbox._course_folders_closed("off: no mount namespace")
        finally:
            sandbox.PACKAGE_ROOT = original
    finally:
        shutil.rmtree(source.parent)
