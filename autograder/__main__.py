import os
import sys

from autograder.cli import main

status = main()
if sys.argv[1:2] == ["grade"]:
    # Every result, grades.csv and summary.png is written and closed by now, and the workers are gone: skip the
    # interpreter's teardown of torch and matplotlib (about 0.7 s of a 20-submission run, measured).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
raise SystemExit(status)
