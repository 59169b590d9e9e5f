#!/usr/bin/env bash
# Rebuilds benchmarks/gpu/carry/ (git-ignored): what a call on a lent GPU machine carries beside the
# tree, because that machine is offline and its image lacks some of what xrdcore needs.
#
#   coremof.xrdexport  the CoRE MOF cache as one compact file (`xrdcore data export --min-intensity 0.01`,
#                      36 MiB): labels,
#                      split and peak lists, which import there without pymatgen
#   wheels/            spglib, the version installed here, for the machine's CPython 3.12 on
#                      manylinux x86_64: xrdcore's space-group tables are derived from spglib's database
#
# Then it checks that the tree (tracked and untracked, not ignored) and the folder together fit the
# 64 MiB a call carries. Run from the repository root (or `make gpu-carry`):
#
#   bash benchmarks/gpu/prepare.sh [CACHE]   CACHE: a built CoRE MOF cache (default $COREMOF_CACHE, else
#                                            the newest data/coremof-*; build one with
#                                            `xrdcore data build coremof --out data/coremof --workers 2`)
#   bash benchmarks/gpu/prepare.sh --check   only the size check
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
PY=${PYTHON:-$ROOT/.venv/bin/python}
CARRY=${GPU_CARRY:-$ROOT/benchmarks/gpu/carry}
LIMIT=$((64 << 20))

check() {
  local tree carry total
  tree=$(git ls-files -z -co --exclude-standard | xargs -0 -r stat -c %s -- 2>/dev/null | awk '{s += $1} END {print s + 0}')
  carry=$(find "$CARRY" -type f -printf '%s\n' 2>/dev/null | awk '{s += $1} END {print s + 0}')
  total=$((tree + carry))
  awk -v t="$tree" -v c="$carry" -v l="$LIMIT" 'BEGIN { printf "tree %.2f MiB + carried %.2f MiB = %.2f MiB of %.0f MiB (%.2f MiB left)\n", t / 2^20, c / 2^20, (t + c) / 2^20, l / 2^20, (l - t - c) / 2^20 }'
  find "$CARRY" -type f -printf '  %P  %s bytes\n' 2>/dev/null | sort
  if [ "$total" -gt "$LIMIT" ]; then
    echo "prepare.sh: over the 64 MiB a call carries; carry less (or keep large untracked files out of the tree)" >&2
    return 1
  fi
}

if [ "${1:-}" = --check ]; then check; exit; fi

CACHE=${1:-${COREMOF_CACHE:-$(ls -dt data/coremof-*/ 2>/dev/null | head -1)}}
if [ -z "$CACHE" ] || [ ! -f "$CACHE/manifest.json" ]; then
  echo "prepare.sh: no CoRE MOF cache${CACHE:+ at $CACHE}; build one with" \
       "\`$ROOT/.venv/bin/xrdcore data build coremof --out data/coremof --workers 2\` and pass it" >&2
  exit 2
fi
mkdir -p "$CARRY/wheels"
rm -f "$CARRY"/wheels/*.whl
SPGLIB=$("$PY" -c 'import importlib.metadata as m; print(m.version("spglib"))')
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$CARRY/wheels" "spglib==$SPGLIB"
# peaks below 0.01% of each pattern's strongest left out (two thirds of them: 36 MiB instead of 51),
# so the tree fits beside it; the imported cache's key records it (docs/training.md, On a GPU)
"$PY" -m xrdcore data export "$CACHE" "$CARRY/coremof.xrdexport" --min-intensity 0.01
check
