#!/usr/bin/env bash
# The two set-up commands of the README:
#   bash cluster/dev.sh demo   # the main job, end to end, on the embedded local stack
#   bash cluster/dev.sh test   # the whole test suite (tests/unit, then tests/integration)
#   bash cluster/dev.sh test tests/unit   # the unit tier only: no stack, a few minutes
#   bash cluster/dev.sh lock [--upgrade]  # rewrite requirements.lock (after a dependency change)
# Each creates the virtual environment (.venv) on first use, or reuses it, and installs the
# locked versions (requirements.lock: every package pinned, with its hashes) whenever
# pyproject.toml or the lock changed. Needs only python3 (3.11) and network access to the
# package registries.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MEDIAJOBS_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
LOCK="$ROOT/requirements.lock"
stamp="$VENV/.mediajobs-install"
want="$(cd "$ROOT" && cat pyproject.toml requirements.lock | sha256sum | cut -c1-16) $ROOT"
if [ "${1:-}" != lock ] && [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing the locked dependencies (requirements.lock) and mediajobs into $VENV (about 3 GB the first time)" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  # Every file checked against the lock's hashes; then the project itself, adding nothing.
  "$VENV/bin/python" -m pip install --quiet --require-hashes -r "$LOCK"
  "$VENV/bin/python" -m pip install --quiet --no-deps -e "$ROOT"
  echo "$want" > "$stamp"
fi

# The lock: what pyproject.toml allows (with the test and bench extras), resolved for the image's platform
# (CPython 3.11, x86_64 Linux), every version pinned and every file's hash. Versions already in
# the lock are kept unless --upgrade; uv only resolves, pip installs.
lock() {
  [ -x "$VENV/bin/uv" ] || "$VENV/bin/python" -m pip install --quiet uv
  cd "$ROOT" && "$VENV/bin/uv" pip compile pyproject.toml --extra test --extra bench --generate-hashes --quiet \
    --python-version 3.11 --python-platform x86_64-manylinux_2_28 --index-url https://pypi.org/simple \
    --custom-compile-command "bash cluster/dev.sh lock" -o requirements.lock "$@"
}

# The audio tests speak real words with Debian's espeak-ng, and one video test makes an
# audio-only MP4 with ffmpeg: install them when this machine can (root + apt-get).
need_tools() {
  local missing=()
  for tool in espeak-ng ffmpeg; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} with apt-get (test media)" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# The layers and the code's own checks come first: seconds, and a broken contract says where.
# Each check runs and prints its failures; any failure fails the command (`set -e` does not
# apply inside a function called as `lint && ...`).
lint() {
  local failed=0
  lint-imports --no-cache >/dev/null || lint-imports --no-cache || failed=1
  ruff check --quiet jobs tasks cluster || failed=1
  mypy --no-error-summary || failed=1
  return "$failed"
}

export PATH="$VENV/bin:$PATH"
cmd="${1:-}"
shift || true
case "$cmd" in
  demo) exec mediajobs demo "$@" ;;
  lock) lock "$@" ;;
  test) need_tools; cd "$ROOT" && lint && exec python -m pytest "$@" ;;
  *) echo "usage: bash cluster/dev.sh demo|test|lock [args...]" >&2; exit 2 ;;
esac
