"""Reading a submitted notebook into the program the worker runs, with diagnostics.

No Jupyter kernel runs at grade time, and the notebook is read as plain JSON. From it we take:

- exercise cells (nbgrader ``solution: true``) whole, minus IPython magics and shell escapes;
- from every other code cell only its *definitions*: imports, ``def``, ``class`` and
  assignments of literal constants. Experiments and plots are skipped, so grading does
  not re-run them;
- test cells (nbgrader ``grade: true`` without ``solution``) never: the hidden suite grades.

Anything odd about the notebook becomes a one-line diagnosis, not a crash.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path

from autograder import parsing


@dataclass
class Cell:
    index: int                 # position among the notebook's cells, 1-based as a person counts
    kind: str                  # "exercise", "test" or "code"
    grade_id: str | None
    source: str
    given: bool = False        # a read-only cell whose source the grader took from the release


@dataclass
class Submission:
    path: Path
    cells: list[Cell] = field(default_factory=list)
    diagnostics: list[str] = field(default_factory=list)
    readable: bool = True

    @property
    def grade_ids(self) -> list[str]:
        return [c.grade_id for c in self.cells if c.grade_id]

    def program(self) -> list[dict]:
        """The cells the worker executes, in notebook order."""
        units = []
        labels = self.cell_labels()
        for cell in self.cells:
            if cell.kind == "test":
                continue
            source = strip_magics(cell.source)
            if cell.kind == "code":
                source = definitions_only(source)
            if source.strip():
                unit = {"index": cell.index, "grade_id": cell.grade_id, "source": source, "label": labels[cell.index]}
                if cell.given:
                    unit["given"] = True
                units.append(unit)
        return units

    def cell_labels(self) -> dict[int, str]:
        """Where a traceback line is, as a student finds it: the exercise's cell by its name, any other code cell by
        its number among the code cells (the `In [n]` counter depends on the run, so it cannot be named)."""
        labels = {}
        for number, cell in enumerate(self.cells, start=1):
            if cell.kind == "exercise" and cell.grade_id:
                labels[cell.index] = f"your {cell.grade_id} cell"
            elif cell.given and cell.grade_id:
                labels[cell.index] = f"the given cell {cell.grade_id}"
            else:
                labels[cell.index] = f"code cell {number}"
        return labels

    def exercise_source(self) -> str:
        return "\n".join(c.source for c in self.cells if c.kind != "test")


def read_submission(path: Path) -> Submission:
    sub = Submission(path=path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        sub.readable = False
        sub.diagnostics.append(f"cannot read {path.name}: {exc.strerror}")
        return sub
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = raw.decode("utf-8", errors="replace")
        sub.diagnostics.append(f"{path.name} is not valid UTF-8 (byte {exc.start}); undecodable bytes were replaced")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        sub.readable = False
        sub.diagnostics.append(f"{path.name} is not valid notebook JSON (line {exc.lineno}, column {exc.colno}: "
                               f"{exc.msg}); was it saved completely?")
        return sub
    except RecursionError:  # brackets nested thousands deep: before, pytest's session stopped (an internal error)
        sub.readable = False
        sub.diagnostics.append(f"{path.name} is not valid notebook JSON (nested too deeply to read)")
        return sub
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        sub.readable = False
        sub.diagnostics.append(f"{path.name} is JSON but not a Jupyter notebook (no list of cells)")
        return sub
    _check_schema(data, sub)
    seen_ids: dict[str, int] = {}
    for i, cell in enumerate(data["cells"], start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(map(str, source)) if isinstance(source, list) else str(source)
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
        if grade_id in seen_ids:
            sub.diagnostics.append(f"cells {seen_ids[grade_id]} and {i} both claim grade_id {grade_id!r}; "
                                   "was a cell duplicated? The later one wins")
        elif grade_id:
            seen_ids[grade_id] = i
        sub.cells.append(Cell(index=i, kind=_kind(meta), grade_id=grade_id, source=source))
    return sub


def _kind(meta: dict) -> str:
    if not isinstance(meta, dict):
        return "code"
    if meta.get("solution"):
        return "exercise"
    if meta.get("grade"):
        return "test"
    return "code"


def _check_schema(data: dict, sub: Submission) -> None:
    """The few structural facts grading relies on (full nbformat validation costs seconds of imports)."""
    if data.get("nbformat") != 4:
        sub.diagnostics.append(f"{sub.path.name} is nbformat {data.get('nbformat')!r}, not 4; grading what can be read")
    odd = [i for i, c in enumerate(data["cells"], start=1)
           if not isinstance(c, dict) or c.get("cell_type") not in ("code", "markdown", "raw")
           or not isinstance(c.get("source", ""), (str, list))]
    if odd:
        sub.diagnostics.append(f"cell(s) {', '.join(map(str, odd[:5]))} of {sub.path.name} "
                               "are malformed and were skipped")


def strip_magics(source: str) -> str:
    """Drop cell magics (``%%``), line magics (``%``), shell escapes (``!``) and help (``?``)."""
    if source.lstrip().startswith("%%"):
        return ""
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        is_help = stripped.endswith("?") and not stripped.startswith("#") and _is_help(stripped)
        if stripped.startswith(("%", "!")) or is_help:
            indent = line[: len(line) - len(stripped)]
            lines.append(f"{indent}pass  # IPython-only line removed by the grader")
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def _is_help(line: str) -> bool:
    try:
        parsing.parse(line)
        return False
    except (RecursionError, MemoryError):  # too deeply nested to parse: not help; the worker reports it
        return False
    except (SyntaxError, ValueError):
        return True


SAFE_STATEMENTS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def definitions_only(source: str) -> str:
    """Keep imports, defs, classes and literal constants of a non-exercise cell.

    Dropped statements become blank lines, so line numbers in tracebacks stay those of the cell.
    """
    try:
        tree = parsing.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # deep nesting: RecursionError
        return source  # let the worker report the syntax error with its line
    lines = source.splitlines()
    for node in tree.body:
        if not (isinstance(node, SAFE_STATEMENTS) or _is_constant_assignment(node)):
            for i in range(_first_line(node) - 1, node.end_lineno or node.lineno):
                lines[i] = ""
    kept = "\n".join(lines)
    return kept + "\n" if kept.strip() else ""


def _first_line(node: ast.stmt) -> int:
    decorators = getattr(node, "decorator_list", [])
    return min([node.lineno] + [d.lineno for d in decorators])


def _is_constant_assignment(node: ast.stmt) -> bool:
    if isinstance(node, ast.Assign):
        value = node.value
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        value = node.value
    else:
        return False
    try:
        ast.literal_eval(value)
        return True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


def find_notebooks(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
