#!/usr/bin/env bash
# Create .venv with the course's pinned dependencies. Idempotent: a second run is instant.
#
# PyTorch: a torch already in .venv is kept (install your GPU build first to use it).
# Otherwise a machine with an NVIDIA GPU gets PyPI's default (CUDA) build, and one
# without gets the CPU build, which is a small download instead of several GB.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0
stamp="$VENV/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
[ -f "$stamp" ] && exit 0

log="$(mktemp)"
fail() { echo "set-up failed: $1 (log below)" >&2; tail -n 30 "$log" >&2; exit 1; }
echo "setting up $VENV (first run only; about a minute) ..." >&2
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV" >>"$log" 2>&1 || fail "could not create a virtual environment with $PYTHON"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)

if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo "  NVIDIA GPU found: installing the CUDA build of torch $TORCH_VERSION" >&2
        "${pip[@]}" install "torch==$TORCH_VERSION" >>"$log" 2>&1 || fail "torch"
    else
        echo "  no GPU: installing the CPU build of torch $TORCH_VERSION" >&2
        "${pip[@]}" install "torch==$TORCH_VERSION+cpu" >>"$log" 2>&1 \
            || "${pip[@]}" install "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu >>"$log" 2>&1 \
            || fail "torch (CPU build)"
    fi
fi
"${pip[@]}" install -c constraints.txt -e ".[dev]" >>"$log" 2>&1 || fail "the course's dependencies"
"$VENV/bin/python" -m ipykernel install --prefix "$VENV" --name python3 >>"$log" 2>&1 || fail "the Jupyter kernel"
rm -f "$VENV"/.installed-*
touch "$stamp"
echo "  done: $("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)')" >&2
