"""When a submission was made, as results.json records it for ``export-gradebook``'s late penalties.

nbgrader's ``submit`` and ``collect`` leave ``timestamp.txt`` in ``submitted/<student>/<assignment>/`` (the
exchange's ``timestamp_format``, default ``%Y-%m-%d %H:%M:%S.%f %Z``), and ``nbgrader autograde`` reads that file
alone (``CourseDirectory.get_existing_timestamp``). The grader records its text as is and, when there is none,
the notebook's modification time, saying which in ``submitted_at_source``.

``parse_utc`` follows ``nbgrader.utils.parse_utc`` line for line: importing nbgrader costs about 3 s (its package
imports the Jupyter server extensions), too much for one graded notebook. ``export-gradebook``, which imports
nbgrader anyway, parses the recorded text again with nbgrader's own function; ``tests/test_export.py`` checks
that the two agree. This module imports neither torch nor nbgrader.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

STAMP = "timestamp.txt"
MAX_STAMP_BYTES = 256  # nbgrader writes about 30


def submission_time(submission: str | Path, notebook: str | Path | None) -> dict:
    """``submitted_at`` (ISO 8601, UTC, with its zone), ``submitted_at_source`` and the raw ``timestamp_txt``."""
    folder = Path(submission)
    folder = folder.parent if folder.suffix == ".ipynb" else folder
    try:
        text = small_text(folder / STAMP).strip()
        return {"submitted_at": _iso(parse_utc(text)), "submitted_at_source": STAMP, "timestamp_txt": text}
    except (OSError, UnicodeDecodeError, ValueError, OverflowError):
        pass  # no timestamp.txt, or one nbgrader could not read either: fall back to the file's time
    path = Path(notebook) if notebook else Path(submission)
    try:
        mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
    except OSError:
        return {"submitted_at": None, "submitted_at_source": None, "timestamp_txt": None}
    return {"submitted_at": mtime.isoformat(), "submitted_at_source": "mtime", "timestamp_txt": None}


def small_text(path: Path, limit: int = MAX_STAMP_BYTES) -> str:
    """The file's text, if it is a small regular file and no link: the folder is the student's, and the grader
    may run as root (a link to /dev/zero or to another user's file is not read). Raises OSError or ValueError."""
    if path.is_symlink() or not path.is_file() or path.stat().st_size > limit:
        raise ValueError(f"{path} is not a small regular file")
    return path.read_text(encoding="utf-8")


def _iso(naive_utc: datetime) -> str:
    return naive_utc.replace(tzinfo=timezone.utc).isoformat()


def parse_utc(text: str) -> datetime:
    """A naive UTC datetime from nbgrader's timestamp text: ``nbgrader.utils.parse_utc`` (nbgrader 0.9)."""
    import dateutil.parser
    import dateutil.tz

    if not text:
        raise ValueError("empty timestamp")
    parts = text.split(" ")
    if len(parts) == 3:
        zone: object = parts[2]
        try:
            zone = int(parts[2])
        except ValueError:
            zone = dateutil.tz.gettz(parts[2])
        ts = dateutil.parser.parse(" ".join(parts[:2] + ["TZ"]), tzinfos={"TZ": zone})
    else:
        ts = dateutil.parser.parse(text)
    if ts.tzinfo is not None:
        ts = (ts - ts.utcoffset()).replace(tzinfo=None)
    return ts
