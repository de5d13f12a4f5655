#!/usr/bin/env bash
# Runs movable_fuzz for a long time, from a copy of the seed corpus, and reports the inputs and
# operations executed and anything found. Usage:
#     tests/fuzz/run_long.sh [seconds (default 14400 = 4 h)] [jobs (default: the CPU count)]
# Environment: MOVABLE_FUZZ_BINARY (default build/fuzz/tests/fuzz/movable_fuzz, built with the
# `fuzz` preset when missing), MOVABLE_FUZZ_WORK (where the corpus, logs and crash inputs go;
# default: a new temporary directory, kept), MOVABLE_FUZZ_OPTIONS (more libFuzzer options, e.g.
# "-entropic=0": libFuzzer's entropic schedule costs about a quarter of the run time, for better
# input selection). Exits non-zero when a job found a crash.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-14400}
jobs=${2:-$(nproc)}
binary=${MOVABLE_FUZZ_BINARY:-build/fuzz/tests/fuzz/movable_fuzz}
if [ ! -x "$binary" ]; then
    cmake --preset fuzz >/dev/null
    cmake --build --preset fuzz
fi
binary=$(realpath "$binary")
seeds=$(realpath tests/fuzz/corpus)
work=${MOVABLE_FUZZ_WORK:-$(mktemp -d -t movable-fuzz.XXXXXX)}
mkdir -p "$work/corpus" "$work/artifacts"
work=$(realpath "$work")
cp "$seeds"/* "$work/corpus/"
cd "$work"

echo "movable_fuzz: $jobs job(s) for ${seconds}s in $work"
options=(-max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$work/artifacts/")
read -r -a extra <<<"${MOVABLE_FUZZ_OPTIONS:-}"
options+=("${extra[@]}")
status=0
if [ "$jobs" -le 1 ]; then
    "$binary" "${options[@]}" corpus >fuzz-0.log 2>&1 || status=$?
else
    # Each job writes fuzz-<n>.log here; the jobs share (and reload) the corpus directory.
    "$binary" "${options[@]}" -jobs="$jobs" -workers="$jobs" corpus >fuzz.log 2>&1 || status=$?
fi

# The harness prints "movable_fuzz: N ops executed in M inputs (...)" at a clean exit.
sum() { grep -ho "$1" fuzz-*.log | awk '{ total += $1 } END { print total + 0 }'; }
ops=$(sum '[0-9]* ops executed' || true)
inputs=$(sum '[0-9]* inputs' || true)
faults=$(sum '[0-9]* faults injected' || true)
migrated=$(sum '[0-9]* frames migrated' || true)
objects=$(sum '[0-9]* objects moved' || true)
steps=$(sum '[0-9]* service steps' || true)
crashes=$(find artifacts -type f | wc -l)
corpus=$(find corpus -type f | wc -l)
echo "movable_fuzz: ${seconds}s x $jobs job(s): $ops ops executed in $inputs inputs," \
     "$faults faults injected, $migrated frames migrated, $objects objects moved," \
     "$steps service steps; corpus $corpus inputs;" \
     "$crashes crash input(s) in $work/artifacts"
if [ "$crashes" -ne 0 ] || [ "$status" -ne 0 ]; then
    for log in fuzz-*.log; do
        if grep -q -e "ERROR: libFuzzer" -e "divergence" -e "contract violated" "$log"; then
            echo "---- $work/$log"
            grep -m1 -B2 -A40 -e "divergence" -e "contract violated" -e "ERROR:" "$log" || true
        fi
    done
    exit 1
fi
