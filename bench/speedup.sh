#!/usr/bin/env bash
# `make demo` and `make test` of this checkout against another commit, one after the other
# on this machine, in one run: wall times and the ratio old / new (the figures of README "Speed").
#
#   bash bench/speedup.sh 41a1525            # both
#   bash bench/speedup.sh 41a1525 demo       # or: test
#
# Both commits run with this checkout's .venv (installed: `make .venv/.installed-stamp`), so the
# install is not timed, only the demo (fresh corpus and results folders) and the suite. The other
# commit is checked out in a temporary git worktree, removed at the end. Absolute times do not
# carry from machine to machine: the ratio does, so the CPU flags are printed with it.
set -euo pipefail

OLD=${1:?usage: bash bench/speedup.sh <commit> [demo|test|both]}
WHAT=${2:-both}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STAMP=.venv/.installed-stamp
[ -f "$ROOT/$STAMP" ] || { echo "speedup.sh: error: no $ROOT/$STAMP: run make $STAMP first" >&2; exit 2; }
case $WHAT in demo|test|both) ;; *) echo "speedup.sh: error: $WHAT: choose demo, test or both" >&2; exit 2;; esac

WORK=$(mktemp -d /tmp/speedup.XXXXXX)
git -C "$ROOT" worktree add --detach -q "$WORK/old" "$OLD"
trap 'git -C "$ROOT" worktree remove --force "$WORK/old"' EXIT
ln -s "$ROOT/.venv" "$WORK/old/.venv"
# The other tree's own code must be the one that runs (the current folder comes before the
# editable install of this checkout).
found=$(cd "$WORK/old" && .venv/bin/python -c "import ser, pathlib; print(pathlib.Path(ser.__file__).parents[1])")
[ "$found" = "$WORK/old" ] || { echo "speedup.sh: error: $WORK/old runs the code of $found" >&2; exit 1; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "CPU flags: $(grep -o 'avx[^ ]*' /proc/cpuinfo | sort -u | xargs)"
echo "old: $(git -C "$ROOT" rev-parse --short "$OLD")  new: $(git -C "$ROOT" rev-parse --short HEAD)$(
    git -C "$ROOT" diff --quiet HEAD || echo ' + uncommitted changes')"

declare -A SECONDS_OF
timed() {  # label, folder, command...: runs it there, logs to $WORK/<label>.log, keeps the wall time
    local label=$1 folder=$2 start status=0
    shift 2
    start=$(date +%s.%N)
    (cd "$folder" && "$@") >"$WORK/$label.log" 2>&1 || status=$?
    SECONDS_OF[$label]=$(echo "$(date +%s.%N) - $start" | bc)
    printf '%-10s %7.1f s  (exit %d; %s; %s)\n' "$label" "${SECONDS_OF[$label]}" "$status" \
        "$(tail -n 1 "$WORK/$label.log")" "$WORK/$label.log"
}

# -o: the shared .venv counts as installed (its stamp is older than a fresh checkout's pyproject).
[ "$WHAT" = demo ] || timed new-test "$ROOT" make -o "$STAMP" test
if [ "$WHAT" != test ]; then
    timed new-demo "$ROOT" .venv/bin/python -m recipes.demo --corpus "$WORK/new-demo/mini_corpus" \
        --results "$WORK/new-demo/results"
    timed old-demo "$WORK/old" make -o "$STAMP" demo
fi
[ "$WHAT" = demo ] || timed old-test "$WORK/old" make -o "$STAMP" test
for step in demo test; do
    if [ -n "${SECONDS_OF[old-$step]:-}" ]; then
        echo "make $step: old ${SECONDS_OF[old-$step]} s, new ${SECONDS_OF[new-$step]} s," \
            "speed-up $(echo "scale=2; ${SECONDS_OF[old-$step]} / ${SECONDS_OF[new-$step]}" | bc)x"
    fi
done
