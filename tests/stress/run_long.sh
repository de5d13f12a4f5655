#!/usr/bin/env bash
# Runs movable_stress for a long time, first under AddressSanitizer + UndefinedBehaviorSanitizer
# (the `test` preset's build) and then under ThreadSanitizer (the `tsan` preset's), and prints
# each run's totals line (operations, compactions, frames migrated, objects moved, mismatches).
# Usage:
#     tests/stress/run_long.sh [seconds (default 3600)] [threads (default 4)] [tsan seconds]
# The ASan run takes `seconds`, the TSan run `tsan seconds` (default: a third of `seconds`; 0
# skips it). Environment: MOVABLE_STRESS_ASAN and MOVABLE_STRESS_TSAN, the binaries (default
# build/test/tests/stress/movable_stress and build/tsan/tests/stress/movable_stress, each built
# with its preset, that target only, when missing); MOVABLE_STRESS_SEED (default 1);
# MOVABLE_STRESS_ARGS (more arguments for both runs, e.g. --shake or --round-ops N);
# MOVABLE_STRESS_LOG (a directory for the full logs; default: a new temporary one, kept).
# Exits non-zero when a run reports a mismatch, a sanitizer finding or fails otherwise.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-3600}
threads=${2:-4}
tsan_seconds=${3:-$((seconds / 3))}
seed=${MOVABLE_STRESS_SEED:-1}
read -r -a extra <<<"${MOVABLE_STRESS_ARGS:-}"
asan=${MOVABLE_STRESS_ASAN:-build/test/tests/stress/movable_stress}
tsan=${MOVABLE_STRESS_TSAN:-build/tsan/tests/stress/movable_stress}
logs=${MOVABLE_STRESS_LOG:-$(mktemp -d -t movable-stress.XXXXXX)}
mkdir -p "$logs"

build() { # preset binary
    if [ ! -x "$2" ]; then
        cmake --preset "$1" >/dev/null
        cmake --build --preset "$1" --target movable_stress -j "$(nproc)"
    fi
}

status=0
run() { # name binary seconds
    local log="$logs/$1.log" result=0
    echo "movable_stress ($1): ${3}s, $threads threads, seed $seed; log $log"
    # ASan/UBSan/TSan abort on their first report (halt_on_error); the exit status says so.
    ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1} TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1} \
        "$2" --ops 0 --seconds "$3" --threads "$threads" --seed "$seed" --progress \
        "${extra[@]}" >"$log" 2>&1 || result=$?
    if grep -q "^movable_stress: [0-9]* ops" "$log"; then
        echo "$1: $(grep "^movable_stress: [0-9]* ops" "$log")"
    fi
    if [ "$result" -ne 0 ] || grep -q -e "WARNING: ThreadSanitizer" -e "ERROR: AddressSanitizer" \
        -e "runtime error:" -e "contract violated" "$log"; then
        echo "---- $1 failed (exit $result):"
        grep -m1 -B2 -A40 -e "WARNING: ThreadSanitizer" -e "ERROR: AddressSanitizer" \
            -e "runtime error:" -e "contract violated" -e "mismatch" -e "accounting" "$log" ||
            tail -40 "$log"
        status=1
    fi
}

if [ "$seconds" -gt 0 ]; then
    [ -n "${MOVABLE_STRESS_ASAN:-}" ] || build test "$asan"
    run asan-ubsan "$asan" "$seconds"
fi
if [ "$tsan_seconds" -gt 0 ]; then
    [ -n "${MOVABLE_STRESS_TSAN:-}" ] || build tsan "$tsan"
    run tsan "$tsan" "$tsan_seconds"
fi
exit "$status"
