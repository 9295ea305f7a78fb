"""How much each assignment's release asks a student to read, and how long that takes at a stated speed.

Counts whitespace-separated words (a LaTeX formula or a line of code counts as its tokens) in each
release notebook under assignments/, in four kinds of cell: the teaching text (markdown), the given
read-only code, the exercise cells (signature and docstring), and the visible test cells, which a
student reads only when a test fails. Minutes assume 238 words per minute, the mean silent reading
rate of adults for English non-fiction in Brysbaert's meta-analysis (2019, "How many words do we read
per minute?", J. Memory and Language 109: 104047; most adults read 175 to 300), applied to code too:
an optimistic speed for text with formulas and code that has to be understood, not skimmed.

The second table splits the reading by exercise: everything from the end of the previous exercise's
test cell to this exercise's cell (its section's text and given code, and its stub), then what follows
the last exercise (experiments, summary).

Usage: python scripts/reading_time.py
"""

from __future__ import annotations

import json
from pathlib import Path

from autograder.notebook import _kind

REPO = Path(__file__).resolve().parent.parent
WORDS_PER_MINUTE = 238


def kind(cell: dict) -> str:
    if cell["cell_type"] == "markdown":
        return "text"
    grading = _kind(cell.get("metadata", {}).get("nbgrader", {}))  # the grader's own reading of the cell
    return {"exercise": "exercises", "test": "tests"}.get(grading, "given code")


def words(cell: dict) -> int:
    return len("".join(cell["source"]).split())


def count(cells: list[dict]) -> dict[str, int]:
    totals = {"text": 0, "given code": 0, "exercises": 0, "tests": 0}
    for cell in cells:
        totals[kind(cell)] += words(cell)
    return totals


def by_exercise(cells: list[dict]) -> list[tuple[str, int]]:
    """(exercise or "after the exercises", words to read) in notebook order; test cells excluded."""
    sections, read = [], 0
    for cell in cells:
        if kind(cell) == "tests":
            continue
        read += words(cell)
        if kind(cell) == "exercises":
            sections.append((cell["metadata"]["nbgrader"]["grade_id"], read))
            read = 0
    return sections + [("after the exercises", read)]


def main() -> None:
    notebooks = [(folder.name, notebook) for folder in sorted((REPO / "assignments").iterdir())
                 for notebook in sorted(folder.glob("*.ipynb"))]
    print(f"{'assignment':20s} {'text':>6s} {'given code':>11s} {'exercises':>10s} {'tests':>6s}   "
          f"minutes to read text + given code + exercises at {WORDS_PER_MINUTE} wpm")
    for name, notebook in notebooks:
        w = count(json.loads(notebook.read_text(encoding="utf-8"))["cells"])
        minutes = (w["text"] + w["given code"] + w["exercises"]) / WORDS_PER_MINUTE
        counts = f"{w['text']:6d} {w['given code']:11d} {w['exercises']:10d} {w['tests']:6d}"
        print(f"{name:20s} {counts}   {minutes:5.0f}")
    print(f"\nreading by exercise (words, minutes at {WORDS_PER_MINUTE} wpm)")
    for name, notebook in notebooks:
        sections = by_exercise(json.loads(notebook.read_text(encoding="utf-8"))["cells"])
        print(f"{name:20s} " + "; ".join(f"{part} {n} ({n / WORDS_PER_MINUTE:.0f})" for part, n in sections))


if __name__ == "__main__":
    main()
