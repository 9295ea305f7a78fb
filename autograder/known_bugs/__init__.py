"""Known-wrong implementations of each exercise, keyed by what the bug is ("attention scaled by 1/d_k").

One module per assignment. The hidden suites pass them to ``checks.expect_close(..., suspects=...)`` so a failure
says "your result matches <bug>"; the release notebooks' visible checks import the same functions (when the course
package is installed) so a student reads the same sentence before submitting. Public like ``policy.py``: it holds
no hidden test, only wrong answers, and student code may not import it (the usage policy's import allowlist).
"""
