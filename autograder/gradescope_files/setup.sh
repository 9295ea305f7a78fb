#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder's image (Ubuntu, network on); the
# Dockerfile at the repository's root runs it too. It installs the course's pinned environment, through the
# repository's own scripts/setup-env.sh (one source of truth for torch's version and constraints.txt), into a
# virtual environment every user may read: the grader gives each worker a uid of its own only when other users
# can read its Python (autograder/worker/sandbox.py, python_readable_by_others).
set -euo pipefail
SOURCE="$(cd "$(dirname "$0")" && pwd)"   # /autograder/source on Gradescope
VENV=/opt/transformer-course

# constraints.txt pins releases that need Python 3.11.5 or newer (numpy and IPython need 3.11, soupsieve 3.11.5).
# Ubuntu 24.04's python3 is 3.12; the official python images' is current. Elsewhere apt is asked for a newer
# Python, and when none is good enough the set-up stops and says so.
usable() { command -v "$1" >/dev/null && "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11, 5))'; }
python=""
for candidate in python3 python3.13 python3.12 python3.11; do
    usable "$candidate" && { python="$candidate"; break; }
done
if [ -z "$python" ] && command -v apt-get >/dev/null; then
    apt-get update -q
    for candidate in python3.12 python3.11; do
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$candidate" "$candidate-venv" >/dev/null 2>&1 \
            && usable "$candidate" && { python="$candidate"; break; }
    done
fi
[ -n "$python" ] || { echo "setup.sh: no Python 3.11.5 or newer; choose Ubuntu 24.04 as the base image" >&2; exit 1; }
# Debian and Ubuntu ship venv's pip bootstrap (ensurepip) in a package of its own.
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    version="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "python$version-venv"
fi

VENV="$VENV" PYTHON="$python" bash "$SOURCE/scripts/setup-env.sh"
chmod -R a+rX "$VENV"
# The grader imports the package from $SOURCE, so that folder is one of Python's: others must be able to pass
# through its parent (/autograder) for Python to count as readable. $SOURCE itself keeps its mode, and Landlock
# keeps workers out of it whatever its mode.
chmod a+x "$(dirname "$SOURCE")"
# On a kernel without Landlock a worker's own uid is what keeps it from the hidden suites, which only their mode
# then closes (sandbox.missing_layers): the grader (root) still reads them. The reference solutions and the known
# bugs built on them are as hidden as the suites, and so are the releases: a5's read-only cells solve a1-a4.
chmod -R o-rwx "$SOURCE/autograder/suites" "$SOURCE/autograder/known_bugs" "$SOURCE/autograder/reference.py" \
    "$SOURCE/assignments"
"$VENV/bin/python" -c 'import autograder.cli, torch; print("autograder ready: torch", torch.__version__)'
