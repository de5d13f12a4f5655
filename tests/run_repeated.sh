#!/usr/bin/env bash
# Runs a build's whole test suite many times in a row, under load, and stops at the first run that
# fails: a test that passes only when a thread happens to be fast or slow shows up here. Usage:
#     tests/run_repeated.sh [runs (default 200)] [preset (default release-clang)]
#                           [lanes (default 1)] [load (default: the CPU count)]
# The suite is the tests of build/<preset> (a configure preset's binaryDir), which must be built
# (e.g. `cmake --workflow --preset release-clang`). `lanes` suites run side by side (each its
# runs ÷ lanes consecutive runs, `ctest -j2`), and `load` processes spin beside them the whole
# time, so every test runs on an oversubscribed machine.
# Environment: MOVABLE_REPEAT_EXCLUDE, a ctest -LE label regex (default
# 'bench|fuzz|compile_fail|install': the benchmarks and the fuzzer's smoke test measure or fuzz
# rather than check, and the compile-fail and install tests run the compiler, which never flakes
# on its own); MOVABLE_REPEAT_LOG, where each failed run's output goes (default: a new temporary
# directory). Prints "run_repeated: R of N runs passed ..." and exits non-zero when one failed.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}
preset=${2:-release-clang}
lanes=${3:-1}
load=${4:-$(nproc)}
exclude=${MOVABLE_REPEAT_EXCLUDE-bench|fuzz|compile_fail|install}
logs=${MOVABLE_REPEAT_LOG:-$(mktemp -d -t movable-repeat.XXXXXX)}
mkdir -p "$logs"

spinners=()
stop_load() {
    if [ "${#spinners[@]}" -gt 0 ]; then
        kill "${spinners[@]}" 2>/dev/null || true
        wait "${spinners[@]}" 2>/dev/null || true
    fi
}
trap stop_load EXIT
for _ in $(seq 1 "$load"); do
    (while :; do :; done) &
    spinners+=("$!")
done

tests=$(ctest --test-dir "build/$preset" -N ${exclude:+-LE "$exclude"} | sed -n 's/^Total Tests: //p')
started=$(date +%s)
echo "run_repeated: $runs runs of $tests tests ($preset${exclude:+, without labels $exclude})" \
     "in $lanes lane(s) beside $load spinning process(es); logs of failed runs in $logs"

# One lane: its share of the runs, one after another; the first failure ends the lane and leaves
# its output in $logs/lane-<n>-run-<k>.log. Each lane writes how many runs it passed.
lane() {
    local index=$1 count=$2 k passed=0
    for k in $(seq 1 "$count"); do
        if [ -e "$logs/stop" ]; then
            break
        fi
        if ! ctest --test-dir "build/$preset" ${exclude:+-LE "$exclude"} -j2 --timeout 300 \
                >"$logs/lane-$index-run-$k.log" 2>&1; then
            touch "$logs/stop"
            echo "run_repeated: lane $index, run $k failed: $logs/lane-$index-run-$k.log"
            grep -E "\*\*\*|Failed|ERROR|error:" "$logs/lane-$index-run-$k.log" | head -20 || true
            echo "$passed" >"$logs/lane-$index.passed"
            return 1
        fi
        rm -f "$logs/lane-$index-run-$k.log"
        passed=$((passed + 1))
    done
    echo "$passed" >"$logs/lane-$index.passed"
}

pids=()
for index in $(seq 1 "$lanes"); do
    share=$(( runs / lanes + (index <= runs % lanes ? 1 : 0) ))
    lane "$index" "$share" &
    pids+=("$!")
done
failed=0
for pid in "${pids[@]}"; do
    wait "$pid" || failed=1
done
stop_load
passed=$(cat "$logs"/lane-*.passed 2>/dev/null | awk '{ total += $1 } END { print total + 0 }')
echo "run_repeated: $passed of $runs runs passed ($tests tests each) in" \
     "$(( $(date +%s) - started )) s, $lanes lane(s), $load spinning process(es) on $(nproc) CPUs"
exit "$failed"
