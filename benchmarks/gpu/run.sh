#!/usr/bin/env bash
# The GPU benchmarks in one command (benchmarks/gpu/run.py says what each stage measures):
#
#   bash benchmarks/gpu/run.sh                  on a lent GPU machine, in the repository root
#   bash benchmarks/gpu/run.sh --resume DIR     a second call: keeps the stages complete in DIR, continues
#                                               the leaderboard from DIR's archive
#   bash benchmarks/gpu/run.sh --dry-run        here, on the CPU: tiny variants, the same code
#   bash benchmarks/gpu/run.sh --install-only   the installation alone
#
# A lent machine is bare and offline, so this first installs the tree (xrdcore and every plugin,
# editable, --no-deps --no-index --no-build-isolation: torch, numpy, pluggy, e3nn, scipy, tqdm,
# matplotlib and safetensors are in its image) and each carried wheel (benchmarks/gpu/carry/wheels,
# made by prepare.sh) whose module does not import, into $GPU_SITE. Everything it prints also goes
# to stages-<gpu|cpu-dryrun>.log beside the results ($OUT, else benchmarks/results, or --out).
set -uo pipefail
GPU_RUN_STARTED=$(date +%s.%N)  # run.py's deadline counts from here, installation included
export GPU_RUN_STARTED PYTHONUNBUFFERED=1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 2
PY=${PYTHON:-python3}
export GPU_CARRY=${GPU_CARRY:-$ROOT/benchmarks/gpu/carry}
SITE=${GPU_SITE:-${TMPDIR:-/tmp}/xrdcore-gpu-site}

suffix=gpu out=${OUT:-$ROOT/benchmarks/results} previous="" install_only=""
for arg in "$@"; do
  [ "$previous" = --out ] && out=$arg
  case $arg in
    --dry-run) suffix=cpu-dryrun ;;
    --out=*) out=${arg#--out=} ;;
    --install-only) install_only=1 ;;  # the install step alone (tests/test_gpu_script.py)
  esac
  previous=$arg
done
mkdir -p "$out" || exit 2

install() {
  local begun actions=() names editables=() whl module
  begun=$(date +%s.%N)
  names=$(sed -n 's/^name = "\(.*\)"$/\1/p' pyproject.toml plugins/*/pyproject.toml)
  # shellcheck disable=SC2086 # one argument per distribution name
  if ! "$PY" -c 'import sys, importlib.metadata as m; [m.distribution(n) for n in sys.argv[1:]]' $names 2>/dev/null; then
    editables=(-e .)
    for p in plugins/*/pyproject.toml; do editables+=(-e "$(dirname "$p")"); done
    if "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir "${editables[@]}"; then
      actions+=("tree (editable)")
    else  # a setuptools too old for editable wheels: install copies instead
      # shellcheck disable=SC2046
      "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir . $(dirname plugins/*/pyproject.toml) \
        || { echo "run.sh: could not install the tree with $PY -m pip"; return 3; }
      actions+=("tree (copies)")
    fi
  fi
  for whl in "$GPU_CARRY"/wheels/*.whl; do
    [ -e "$whl" ] || continue
    module=$(basename "$whl" | cut -d- -f1 | tr '[:upper:]' '[:lower:]')
    "$PY" -c "import $module" 2>/dev/null && continue
    if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$whl"; then
      actions+=("wheel $(basename "$whl")")
    else
      echo "run.sh: could not install $whl for $("$PY" -V 2>&1); run.py will say what does not import"
    fi
  done
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  local list="" a
  for a in "${actions[@]}"; do list+="${list:+, }\"$a\""; done
  local seconds
  seconds=$(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $begun }")
  GPU_INSTALL_REPORT=$(printf '{"python": "%s", "seconds": %s, "installed": [%s], "site": "%s"}' \
    "$(command -v "$PY")" "$seconds" "$list" "$SITE")
  export GPU_INSTALL_REPORT
  echo "run.sh: install step took $seconds s: ${actions[*]:-nothing needed}"
}

main() {
  echo "run.sh: $(date -u +%FT%TZ) $("$PY" -V 2>&1) in $ROOT, results to $out"
  install || return $?
  [ -n "$install_only" ] || "$PY" benchmarks/gpu/run.py "$@"
}

main "$@" 2>&1 | tee "$out/stages-$suffix.log"
exit "${PIPESTATUS[0]}"
