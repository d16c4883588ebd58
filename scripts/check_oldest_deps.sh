#!/usr/bin/env bash
# Runs the test suite against the oldest versions pyproject.toml allows (its lower bounds), in a fresh virtual
# environment: the check behind the comment on those bounds there. Needs PyPI. Takes about as long as the suite.
#   bash scripts/check_oldest_deps.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
case "$py" in
  3.10) pins=("numpy==1.23.0" "pillow==9.0.0" "tqdm==4.60.0" "matplotlib==3.5.0" "pytest==7.0.0") ;;
  # Python 3.11 has no wheels of numpy 1.23.0/1.23.1, pillow 9.0/9.1 or matplotlib 3.5: its oldest ones.
  3.11) pins=("numpy==1.23.2" "pillow==9.2.0" "tqdm==4.60.0" "matplotlib==3.6.0" "pytest==7.0.0") ;;
  *) echo "check_oldest_deps: the oldest pins are written for Python 3.10 and 3.11, not $py" >&2; exit 2 ;;
esac
venv=${1:-$(mktemp -d)/venv}
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q --only-binary=:all: "${pins[@]}" "pybind11==2.12.0" "cmake==3.24.3" ninja setuptools wheel
"$venv/bin/python" -m pip install -q --no-build-isolation --no-deps -e .  # the tests also import benchmarks/
"$venv/bin/python" -m pip list 2>/dev/null | grep -Ei '^(numpy|pillow|tqdm|matplotlib|pytest|pybind11|cmake) '
PATH="$venv/bin:$PATH" "$venv/bin/python" -m pytest -q -p no:cacheprovider tests -k "not cuda_emulation"
