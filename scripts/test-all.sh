#!/usr/bin/env bash
# The test command of forkaudit (the README's, and what .ci/run calls).
#
# First the release check (scripts/release-check.sh): the sdist, ONE wheel built from
# it with Python 3.9 (abi3/cp39: one wheel serves 3.9+), its checks, and a fresh venv
# per Python with that wheel installed with no compiler on PATH. Then for each of
# Python 3.9, 3.10, 3.11, 3.12 and 3.13 installed by pyenv: pytest against the
# *installed* wheel (run from outside the source tree), and the shared acceptance
# scenarios (../shared/scenarios) when they are there. Ends with a summary table and
# "N passed, N failed, N skipped": tests and scenario runs counted from pytest's and
# run_scenarios.py's summary lines (a step that died without one counts 1 failed);
# exits non-zero if any failed.
#
#   bash scripts/test-all.sh                       # every Python 3.9-3.13 found
#   bash scripts/test-all.sh --quick               # only the newest one found
#   bash scripts/test-all.sh --python 3.12 [--python 3.9 ...]
#   FORKAUDIT_PYTHONS="3.11 3.12" bash scripts/test-all.sh
#   bash scripts/test-all.sh --sanitize            # and the ASan+UBSan pass (scripts/sanitize.sh)
#
# Environment: FORKAUDIT_WORKDIR (default <repo>/.ci-work; each run uses its own
# run.* folder in it, removed after a passing run, kept after a failing one),
# FORKAUDIT_KEEP_WORK=1 (keep it anyway), FORKAUDIT_PYTEST_TIMEOUT (seconds,
# default 900), FORKAUDIT_SCENARIO_TIMEOUT (default 600).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${FORKAUDIT_WORKDIR:-$REPO/.ci-work}
SHARED=$(cd "$REPO/.." && pwd)/shared
PYTEST_TIMEOUT=${FORKAUDIT_PYTEST_TIMEOUT:-900}
SCENARIO_TIMEOUT=${FORKAUDIT_SCENARIO_TIMEOUT:-600}
ALL_MINORS=(3.9 3.10 3.11 3.12 3.13)

usage() { sed -n 2,20p "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

read -r -a WANTED <<< "${FORKAUDIT_PYTHONS:-${ALL_MINORS[*]}}"
QUICK=0
SANITIZE=0
PICKED=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --sanitize) SANITIZE=1 ;;
    --python)
      [ $# -ge 2 ] || { echo "test-all: --python needs a version, e.g. --python 3.12" >&2; exit 2; }
      shift; PICKED+=("$1") ;;
    --python=*) PICKED+=("${1#--python=}") ;;
    -h|--help) usage; exit 0 ;;
    *) echo "test-all: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ ${#PICKED[@]} -gt 0 ]; then WANTED=("${PICKED[@]}"); fi
for minor in "${WANTED[@]}"; do
  if ! [[ $minor =~ ^3\.[0-9]+$ ]]; then
    echo "test-all: '$minor' is not a Python minor version like 3.12" >&2; exit 2
  fi
done

# The tests must see the installed wheel and nothing else: no source tree on the
# path, and no forkaudit activated in the test runner itself by the caller's shell.
unset PYTHONPATH PYTHONHOME FORKAUDIT FORKAUDIT_JSON FORKAUDIT_SCAN

. "$REPO/scripts/find-python.sh"   # PYENV_VERSIONS, find_python MINOR

[ -n "$PYENV_VERSIONS" ] || echo "test-all: pyenv not found (no \$(pyenv root)/versions)"
NAMES=()   # "3.12.1"
PYS=()     # its interpreter
for minor in "${WANTED[@]}"; do
  py=$(find_python "$minor")
  if [ -z "$py" ]; then
    echo "skip: Python $minor not installed"
  else
    NAMES+=("$(basename "$(dirname "$(dirname "$py")")")")
    PYS+=("$py")
  fi
done
if [ ${#PYS[@]} -eq 0 ]; then
  echo "test-all: none of Python ${WANTED[*]} is installed under \$(pyenv root)/versions" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
if [ $QUICK = 1 ]; then  # the newest of those found
  newest=0
  for i in "${!NAMES[@]}"; do
    if [ "$(printf '%s\n%s\n' "${NAMES[$i]}" "${NAMES[$newest]}" | sort -V | tail -n 1)" = "${NAMES[$i]}" ]; then newest=$i; fi
  done
  NAMES=("${NAMES[$newest]}"); PYS=("${PYS[$newest]}")
fi


START=$SECONDS
mkdir -p "$WORK"
# leftovers: runs older than a day, and the layout of earlier versions of this script
find "$WORK" -mindepth 1 -maxdepth 1 -name 'run.*' -mmin +1440 -exec rm -rf {} + 2>/dev/null || true
if [ "$WORK" = "$REPO/.ci-work" ]; then rm -rf "$WORK"/venv-3.* "$WORK/dist"; fi
RUN=$(mktemp -d "$WORK/run.XXXXXX")
mkdir -p "$RUN/dist" "$RUN/logs"
KEEP=${FORKAUDIT_KEEP_WORK:-0}
cleanup() { if [ "$KEEP" = 0 ]; then rm -rf "$RUN"; fi; }
trap cleanup EXIT

# The release check builds the sdist and the wheel from it (in a copy of the tree: this
# tree is not written to), and leaves venv-X.Y in $RUN with that wheel installed.
echo "== release check (sdist, wheel from the sdist, install with no compiler)"
MINORS_PICKED=()
for name in "${NAMES[@]}"; do MINORS_PICKED+=(--python "${name%.*}"); done
release_status=0
FORKAUDIT_WORKDIR=$WORK bash "$REPO/scripts/release-check.sh" --out "$RUN" "${MINORS_PICKED[@]}" </dev/null 2>&1 \
  | grep -v '^WARNING: Location' | tee "$RUN/logs/release-check.log" || release_status=${PIPESTATUS[0]}
WHEEL=$(cat "$RUN/release-wheel" 2>/dev/null || true)
if [ "$release_status" != 0 ] || [ ! -f "$WHEEL" ]; then
  echo "test-all: the release check failed (exit $release_status); no wheel to test" >&2
  KEEP=1
  echo "work dir kept for inspection: $RUN (logs in $RUN/logs)"
  echo "0 passed, 1 failed"
  exit 1
fi
export FORKAUDIT_WHEEL=$WHEEL   # for tests that make their own venvs
echo "   testing $WHEEL"

PASSED=0
FAILED=0
SKIPPED=0
ROW_PY=()
ROW_TEST=()
ROW_SCEN=()
fail() { FAILED=$((FAILED + 1)); KEEP=1; }

count() {  # add a step's counts from its summary line; 1 failed if it has none or exited non-zero
  local status=$1 log=$2 line p f e s
  line=$(sed -e 's/\x1b\[[0-9;]*m//g' "$log" \
         | grep -E '^=* *[0-9]+ (passed|failed|skipped|error|errors|deselected|xfailed|xpassed)\b' | tail -n 1 || true)
  p=$(grep -oE '[0-9]+ passed' <<< "$line" | grep -oE '^[0-9]+' || echo 0)
  f=$(grep -oE '[0-9]+ failed' <<< "$line" | grep -oE '^[0-9]+' || echo 0)
  e=$(grep -oE '[0-9]+ errors?' <<< "$line" | grep -oE '^[0-9]+' || echo 0)
  s=$(grep -oE '[0-9]+ skipped' <<< "$line" | grep -oE '^[0-9]+' || echo 0)
  PASSED=$((PASSED + p)); SKIPPED=$((SKIPPED + s)); FAILED=$((FAILED + f + e))
  if [ "$status" != 0 ]; then
    KEEP=1
    [ $((f + e)) -gt 0 ] || FAILED=$((FAILED + 1))   # died, timed out, or collected nothing
  fi
}

last_summary() {  # the last non-empty line of a log, without pytest's ==== decoration
  sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^=* *//' -e 's/ *=*$//' -e 's/ ([0-9]*:[0-9:]*)$//' "$1" \
    | sed '/^$/d' | tail -n 1 | cut -c1-70
}

describe() {  # exit-status timeout-seconds log -> text for the table
  local status=$1 limit=$2 log=$3
  case $status in
    0) echo "ok ($(last_summary "$log"))" ;;
    124|137) echo "FAILED: timeout after ${limit}s" ;;
    5) echo "FAILED: no tests collected (exit 5)" ;;
    *) echo "FAILED exit $status ($(last_summary "$log"))" ;;
  esac
}

for i in "${!PYS[@]}"; do
  name=${NAMES[$i]}
  py=${PYS[$i]}
  minor=${name%.*}
  venv="$RUN/venv-$minor"
  echo
  echo "== Python $name ($py)"
  where=""
  ROW_PY+=("$name")
  # the venv the release check made (the wheel with its [test,libs] extras: pytest, jsonschema,
  # and the real libraries of tests/test_real_libraries.py, installed from wheels with no
  # compiler), and a check that `import forkaudit` outside the tree loads it (with its _shim)
  if [ ! -x "$venv/bin/python" ] \
     || ! where=$(cd "$RUN" && "$venv/bin/python" -c 'import forkaudit, forkaudit._shim; print(forkaudit.__file__)') \
     || [[ $where != "$venv"/* ]]; then
    echo "test-all: no Python $name venv with the wheel from the release check${where:+ (forkaudit from $where)}" >&2
    fail
    ROW_TEST+=("FAILED: venv/install")
    ROW_SCEN+=("not run")
    continue
  fi

  log="$RUN/logs/pytest-$minor.log"
  status=0
  # two workers (pytest-xdist, from the [test] extra): the tests are subprocess-bound. The stress
  # tests (thousands of forks) run once, on the newest Python; the others deselect them.
  select=()
  if [ "$i" != $((${#PYS[@]} - 1)) ]; then select=(-m "not stress"); fi
  (cd "$RUN" && timeout -s INT -k 60 "$PYTEST_TIMEOUT" "$venv/bin/python" -m pytest "$REPO/tests" -p no:cacheprovider -q \
     -n 2 "${select[@]}" </dev/null) 2>&1 | tee "$log" || status=${PIPESTATUS[0]}
  count "$status" "$log"
  ROW_TEST+=("$(describe "$status" "$PYTEST_TIMEOUT" "$log")")

  if [ -f "$SHARED/scenarios/run_scenarios.py" ]; then
    log="$RUN/logs/scenarios-$minor.log"
    status=0
    echo "-- scenarios ($SHARED/scenarios)"
    (cd "$RUN" && timeout -k 30 "$SCENARIO_TIMEOUT" "$venv/bin/python" "$SHARED/scenarios/run_scenarios.py" --python "$venv/bin/python" </dev/null) 2>&1 | tee "$log" || status=${PIPESTATUS[0]}
    count "$status" "$log"
    ROW_SCEN+=("$(describe "$status" "$SCENARIO_TIMEOUT" "$log")")
  else
    echo "skip: no shared scenarios at $SHARED/scenarios (scenario step not run)"
    ROW_SCEN+=("skipped: no ../shared/scenarios")
  fi
done

# ---- sanitizer pass (issue 7): the suite once more, one Python, against an ASan+UBSan
# build of the shim (scripts/sanitize.sh; about 2-3 minutes). A row of its own below.
if [ "$SANITIZE" = 1 ]; then
  log="$RUN/logs/sanitize.log"
  status=0
  san_minor=${NAMES[$((${#NAMES[@]} - 1))]%.*}
  echo
  echo "== sanitizer pass, Python $san_minor (scripts/sanitize.sh)"
  timeout -k 30 1800 bash "$REPO/scripts/sanitize.sh" --python "$san_minor" </dev/null 2>&1 | tee "$log" || status=${PIPESTATUS[0]}
  count "$status" "$log"
  ROW_PY+=("asan+ubsan $san_minor")
  ROW_TEST+=("$(describe "$status" 1800 "$log")")
  ROW_SCEN+=("not run")
fi

elapsed=$((SECONDS - START))
echo
echo "== summary (wheel $(basename "$WHEEL"), $((elapsed / 60))m$((elapsed % 60))s)"
w1=6; w2=6
for i in "${!ROW_PY[@]}"; do
  [ ${#ROW_PY[$i]} -le $w1 ] || w1=${#ROW_PY[$i]}
  [ ${#ROW_TEST[$i]} -le $w2 ] || w2=${#ROW_TEST[$i]}
done
rule() { printf '%*s' "$1" '' | tr ' ' -; }
printf "%-${w1}s | %-${w2}s | %s\n" python pytest scenarios
printf '%s-+-%s-+-%s\n' "$(rule "$w1")" "$(rule "$w2")" "$(rule 40)"
for i in "${!ROW_PY[@]}"; do
  printf "%-${w1}s | %-${w2}s | %s\n" "${ROW_PY[$i]}" "${ROW_TEST[$i]}" "${ROW_SCEN[$i]}"
done
[ "$KEEP" = 0 ] || echo "work dir kept for inspection: $RUN (logs in $RUN/logs)"
# why tests skipped (pytest -ra lines), grouped, on the line before the closing one
reasons=$(cat "$RUN"/logs/pytest-*.log 2>/dev/null | sed -e 's/\x1b\[[0-9;]*m//g' \
          | sed -n 's/^SKIPPED \[\([0-9]*\)\] [^ ]*: /\1 /p' \
          | awk '{n=$1; $1=""; sub(/^ /, ""); if (!($0 in c)) o[k++]=$0; c[$0]+=n}
                 END {for (i=0; i<k; i++) printf "%s%s (%d)", (i ? "; " : ""), o[i], c[o[i]]}')
echo "release check: ok ($(basename "$WHEEL"), built from the sdist); pytest and scenarios on ${#ROW_PY[@]} Python(s)"
if [ "$SKIPPED" != 0 ]; then echo "skipped: ${reasons:-scenarios that cannot run here (run_scenarios.py exit 77)}"; fi
if [ "$SKIPPED" = 0 ]; then echo "$PASSED passed, $FAILED failed"; else echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"; fi
[ "$FAILED" = 0 ]
