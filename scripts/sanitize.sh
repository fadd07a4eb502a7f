#!/usr/bin/env bash
# The test suite against an AddressSanitizer + UBSan build of the C shim.
#
#   bash scripts/sanitize.sh                      # Python 3.12 (pyenv), the whole suite
#   bash scripts/sanitize.sh --python 3.9 [-- PYTEST ARGS...]
#   FORKAUDIT_SANITIZE_SCENARIOS=1 bash scripts/sanitize.sh   # and the shared scenarios
#
# Builds the shim with FORKAUDIT_SANITIZE=1 (build.py: -fsanitize=address,undefined
# -fno-sanitize-recover=all, plus FORKAUDIT_WERROR=1) into a fresh venv outside the tree,
# checks that the extension really links libasan and libubsan, then runs pytest with
#
#   LD_PRELOAD=$(cc -print-file-name=libasan.so)   the interpreter is not instrumented: the
#                                                  ASan runtime must be loaded first
#   ASAN_OPTIONS=detect_leaks=0                    CPython's own allocations are not leaks
#     handle_segv=0:handle_sigbus=0                the scan installs its own SIGSEGV/SIGBUS
#                                                  handlers (a fault skips a page); ASan's
#                                                  must not take those signals instead
#     quarantine_size_mb=16                      less memory held by freed blocks
#     log_path=DIR/asan                            every report of every process (forked
#                                                  children and subprocesses too) in a file
#   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1
#                                                  gcc's UBSan runtime (libubsan, apart from
#                                                  libasan) ignores log_path when ASan is
#                                                  preloaded: a finding is on stderr and kills
#                                                  the process (SIGABRT), failing its test
#
# Passes only if pytest passes AND no process wrote a sanitizer report. The scanning
# functions read whole mappings (redzones and shadow memory included) and are marked
# no_sanitize("address", "undefined") in csrc/: that is by design, not a finding.
# Last line: "sanitize: clean" or "sanitize: FAILED (...)".
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=$(cd "$REPO/.." && pwd)/shared
MINOR=3.12
while [ $# -gt 0 ]; do
  case "$1" in
    --python) MINOR=$2; shift 2 ;;
    --python=*) MINOR=${1#--python=}; shift ;;
    --) shift; break ;;
    -h|--help) sed -n 2,25p "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) break ;;
  esac
done

PY=""
if command -v pyenv >/dev/null 2>&1; then
  for dir in "$(pyenv root)/versions/$MINOR".*; do
    [[ ${dir##*/} =~ ^${MINOR//./\\.}\.[0-9]+$ ]] && [ -x "$dir/bin/python3" ] && PY=$dir/bin/python3
  done
fi
[ -n "$PY" ] || PY=$(command -v "python$MINOR" || true)
[ -n "$PY" ] || { echo "sanitize: Python $MINOR not found"; echo "sanitize: FAILED (no python)"; exit 1; }

CC=${CC:-cc}
ASAN_LIB=$("$CC" -print-file-name=libasan.so)
if [ ! -e "$ASAN_LIB" ] || [ "$ASAN_LIB" = libasan.so ]; then
  echo "sanitize: $CC has no libasan.so (install the compiler's sanitizer runtime, e.g. libasan8)"
  echo "sanitize: FAILED (no libasan)"
  exit 1
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/forkaudit-sanitize.XXXXXX")
[ "${FORKAUDIT_SANITIZE_KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/reports"
echo "== sanitizer build with $PY ($ASAN_LIB)"
unset PYTHONPATH PYTHONHOME FORKAUDIT FORKAUDIT_JSON FORKAUDIT_SCAN
"$PY" -m venv "$WORK/venv" </dev/null
rm -rf "$REPO/build" "$REPO"/*.egg-info
FORKAUDIT_SANITIZE=1 FORKAUDIT_WERROR=1 "$WORK/venv/bin/pip" install -q --no-cache-dir "$REPO[test]" </dev/null
rm -rf "$REPO/build" "$REPO"/*.egg-info
SHIM=$(cd "$WORK" && "$WORK/venv/bin/python" -c 'import forkaudit._shim as s; print(s.__file__)' 2>/dev/null || true)
if [ -z "$SHIM" ]; then  # importing it without the preload fails when it is sanitized
  SHIM=$(find "$WORK/venv" -name '_shim*.so' | head -n 1)
fi
LINKED=$(ldd "$SHIM" 2>&1 || true)   # (not `ldd | grep -q`: under pipefail, grep's early exit fails ldd)
if [[ $LINKED != *libasan* ]] || [[ $LINKED != *libubsan* ]]; then
  echo "sanitize: $SHIM does not link libasan and libubsan: not a sanitizer build"
  echo "sanitize: FAILED (build)"
  exit 1
fi
echo "   $SHIM"

export LD_PRELOAD=$ASAN_LIB
export ASAN_OPTIONS="detect_leaks=0:handle_segv=0:handle_sigbus=0:quarantine_size_mb=16:log_path=$WORK/reports/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1"
status=0
# deselected: test_real_maps_name_this_process expects malloc to live in libc (under the preload
# it is libasan's); the stress tests and the signal-handler fork tests are timing-bound (ASan
# makes every fork several times slower, so signal handlers nest far deeper than in a normal
# run); those run in the normal pass of scripts/test-all.sh.
(cd "$WORK" && timeout -k 30 "${FORKAUDIT_SANITIZE_TIMEOUT:-1200}" "$WORK/venv/bin/python" -m pytest "$REPO/tests" \
   -p no:cacheprovider -q -m "not stress" \
   -k "not test_real_maps_name_this_process and not signal_handler and not busy_multiprocessing_queue" \
   "$@" </dev/null) || status=$?
if [ "${FORKAUDIT_SANITIZE_SCENARIOS:-0}" = 1 ] && [ -f "$SHARED/scenarios/run_scenarios.py" ]; then
  echo "-- scenarios"
  (cd "$WORK" && timeout -k 30 600 "$WORK/venv/bin/python" "$SHARED/scenarios/run_scenarios.py" \
     --python "$WORK/venv/bin/python" </dev/null) || status=$?
fi
unset LD_PRELOAD

shopt -s nullglob
reports=("$WORK"/reports/*)
if [ ${#reports[@]} -gt 0 ]; then
  for r in "${reports[@]}"; do echo "---- $r"; head -n 60 "$r"; done
fi
if [ "$status" = 0 ] && [ ${#reports[@]} = 0 ]; then
  echo "sanitize: clean"
else
  echo "sanitize: FAILED (pytest exit $status, ${#reports[@]} sanitizer report(s))"
  exit 1
fi
