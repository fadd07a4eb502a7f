#!/usr/bin/env bash
# The test command of forkaudit (the README's, and what .ci/run calls).
#
# Builds ONE wheel (the extension is abi3/cp39, so one wheel serves 3.9+), then for
# each of Python 3.9, 3.10, 3.11, 3.12 and 3.13 installed by pyenv: a fresh venv with
# the wheel, pytest against the *installed* package (run from outside the source tree),
# and the shared acceptance scenarios (../shared/scenarios) when they are there.
#
#   bash scripts/test-all.sh               # every Python found
#   bash scripts/test-all.sh --quick       # only the newest one
#   bash scripts/test-all.sh --python 3.12 [--python 3.9]
#   FORKAUDIT_PYTHONS="3.11 3.12" bash scripts/test-all.sh
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${FORKAUDIT_WORKDIR:-$REPO/.ci-work}
SHARED=$(cd "$REPO/.." && pwd)/shared
WANTED=(${FORKAUDIT_PYTHONS:-3.9 3.10 3.11 3.12 3.13})
QUICK=0
PICKED=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --python) shift; PICKED+=("$1") ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) echo "test-all: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ ${#PICKED[@]} -gt 0 ] && WANTED=("${PICKED[@]}")

find_python() {  # newest patch release of one minor version under pyenv, else python3.X on PATH
  local minor=$1 root cand=""
  if command -v pyenv >/dev/null 2>&1; then
    root=$(pyenv root)
    cand=$(ls -d "$root"/versions/"$minor".*/bin/python3 2>/dev/null | sort -V | tail -n 1 || true)
  elif [ -d "$HOME/.pyenv/versions" ]; then
    cand=$(ls -d "$HOME"/.pyenv/versions/"$minor".*/bin/python3 2>/dev/null | sort -V | tail -n 1 || true)
  fi
  [ -z "$cand" ] && cand=$(command -v "python$minor" || true)
  echo "$cand"
}

PYTHONS=()
for minor in "${WANTED[@]}"; do
  py=$(find_python "$minor")
  if [ -z "$py" ]; then
    echo "skip: Python $minor not installed"
  else
    PYTHONS+=("$minor=$py")
  fi
done
if [ ${#PYTHONS[@]} -eq 0 ]; then
  echo "test-all: no Python 3.9-3.13 found (looked under \$(pyenv root)/versions)" >&2
  exit 1
fi
[ $QUICK = 1 ] && PYTHONS=("${PYTHONS[-1]}")

rm -rf "$WORK"
mkdir -p "$WORK/dist"
echo "== building the wheel with ${PYTHONS[0]#*=}"
builder=${PYTHONS[0]#*=}
# never `python -m build` here: the root build.py shadows the PyPA frontend
(cd "$REPO" && "$builder" -m pip wheel --no-deps -q -w "$WORK/dist" .)
rm -rf "$REPO/build" "$REPO"/*.egg-info
WHEEL=$(ls "$WORK"/dist/forkaudit-*.whl)
export FORKAUDIT_WHEEL=$WHEEL
echo "   $WHEEL"

RESULTS=()
PASSED=0
FAILED=0
record() {  # step-name status
  RESULTS+=("$1: $2")
  if [ "$2" = ok ]; then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); fi
}

for entry in "${PYTHONS[@]}"; do
  minor=${entry%%=*}
  py=${entry#*=}
  venv="$WORK/venv-$minor"
  echo "== Python $minor ($py)"
  if ! "$py" -m venv "$venv" || ! "$venv/bin/pip" install -q "$WHEEL" pytest jsonschema; then
    record "python $minor install" failed
    continue
  fi
  set +e
  (cd "$WORK" && timeout 1200 "$venv/bin/python" -m pytest "$REPO/tests" -p no:cacheprovider -q)
  status=$?
  set -e
  if [ $status = 0 ]; then record "python $minor pytest" ok; else record "python $minor pytest" "failed (exit $status)"; fi
  if [ -f "$SHARED/scenarios/run_scenarios.py" ]; then
    set +e
    (cd "$WORK" && timeout 900 "$venv/bin/python" "$SHARED/scenarios/run_scenarios.py" --python "$venv/bin/python")
    status=$?
    set -e
    if [ $status = 0 ]; then record "python $minor scenarios" ok; else record "python $minor scenarios" "failed (exit $status)"; fi
  else
    echo "skip: no shared scenarios at $SHARED/scenarios"
  fi
done

echo
echo "== summary"
for line in "${RESULTS[@]}"; do echo "   $line"; done
echo "$PASSED passed, $FAILED failed"
[ $FAILED = 0 ]
