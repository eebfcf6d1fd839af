# Sourced by scripts/test and scripts/demo: find Python >= 3.12 (Django 6 needs it) and make the venv.
# Sets PYTHON and VENV; both may be given in the environment.
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.13 python3.12 "$HOME"/.pyenv/versions/3.12.*/bin/python python3; do
    if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
      PYTHON="$candidate"; break
    fi
  done
fi
: "${PYTHON:?no Python >= 3.12 found; set PYTHON=/path/to/python3.12}"
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null
