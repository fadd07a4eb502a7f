# Sourced (not run) by scripts/test-all.sh and scripts/release-check.sh: where pyenv keeps its
# Pythons, and find_python MINOR, the interpreter of the newest patch release X.Y.Z of one
# minor version there (not -dev, not 3.13t), or nothing when there is none.

PYENV_VERSIONS=""
if command -v pyenv >/dev/null 2>&1; then
  PYENV_VERSIONS="$(pyenv root)/versions"
elif [ -d "${PYENV_ROOT:-$HOME/.pyenv}/versions" ]; then
  PYENV_VERSIONS="${PYENV_ROOT:-$HOME/.pyenv}/versions"
fi

find_python() {
  local minor=$1 dir best=""
  [ -n "$PYENV_VERSIONS" ] || return 0
  for dir in "$PYENV_VERSIONS/$minor".*; do
    [[ ${dir##*/} =~ ^${minor//./\\.}\.[0-9]+$ ]] || continue
    [ -x "$dir/bin/python3" ] || continue
    best=$(printf '%s\n%s\n' "$best" "$dir" | sed '/^$/d' | sort -V | tail -n 1)
  done
  [ -n "$best" ] && echo "$best/bin/python3"
  return 0
}
