#!/usr/bin/env bash
# The project's test command (what CI runs): installs what is missing (scripts/setup.sh,
# cached per user), builds, and runs every suite that needs no GPU, each to its end even
# when an earlier one failed:
#
#   Rust    cargo test: the engine, the CLI, the references' comparisons
#   C       tests/c_api.rs: the C tests and examples, against the installed header and
#           library (under valgrind where it is installed); run by the same cargo test
#   Go      scripts/test_go.sh: go vet + go test -race
#   Swift   scripts/test_swift.sh: swift build + swift test in the Debian-trixie chroot
#           (needs root)
#   Fuzz    scripts/fuzz.sh: the fuzz targets built, their seeds and regression inputs
#           replayed, then fuzzed briefly (MLXRUN_FUZZ_SECONDS each, default 10)
#
# Ends with one line per suite and a last line "N passed, N failed" over all of them; the
# exit status is non-zero when a test failed or a suite could not run. Each suite's whole
# output is also kept in target/test-logs/.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh || { echo "test.sh: setup failed" >&2; exit 1; }
# The references were recorded with one OpenBLAS thread (scripts/setup.sh): the same
# thread count makes float32 results agree to the bit.
export OPENBLAS_NUM_THREADS=1

LOGS="$ROOT/target/test-logs"
mkdir -p "$LOGS"
SUMMARY=()
TOTAL_PASSED=0
TOTAL_FAILED=0

# record NAME PASSED FAILED STATUS TIME: one summary line. A suite that exited non-zero
# without a failed test (it did not build, or crashed) counts as one failure.
record() {
    local name="$1" passed="$2" failed="$3" status="$4" time="$5" note=""
    if [ "$status" != 0 ] && [ "$failed" = 0 ]; then failed=1; note="  (exited with status $status before reporting a failure)"; fi
    SUMMARY+=("$(printf '%-6s %5d passed, %3d failed  %s%s' "$name" "$passed" "$failed" "$time" "$note")")
    TOTAL_PASSED=$((TOTAL_PASSED + passed))
    TOTAL_FAILED=$((TOTAL_FAILED + failed))
}

# --- Rust and C: one cargo test run; its results are split by test binary ---------------------
t0=$SECONDS
cargo build --all-targets --locked 2>&1 | tee "$LOGS/build.log"
build_status=${PIPESTATUS[0]}
if [ "$build_status" = 0 ]; then
    # The C tests under valgrind (single-threaded, minutes) run later, beside Go and Swift.
    cargo test --locked --no-fail-fast -- --test-threads=2 --skip c_tests_pass_memcheck 2>&1 | tee "$LOGS/cargo-test.log"
    status=${PIPESTATUS[0]}
else
    status=$build_status
    : >"$LOGS/cargo-test.log"
fi
# "Running tests/c_api.rs (…)" opens the C suite's results; every other binary is Rust's.
read -r rust_passed rust_failed c_passed c_failed < <(awk '
    /^ *Running / { c = ($2 == "tests/c_api.rs") }
    /^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i + 1) ~ /^passed/) { if (c) cp += $i; else rp += $i }
            if ($(i + 1) ~ /^failed/) { if (c) cf += $i; else rf += $i }
        }
    }
    END { printf "%d %d %d %d\n", rp, rf, cp, cf }' "$LOGS/cargo-test.log")
secs=$((SECONDS - t0))
# cargo's status covers both suites: failures the C suite reported are not Rust's.
rust_status=$status
[ "$rust_failed" = 0 ] && [ "$c_failed" != 0 ] && rust_status=0
record Rust "$rust_passed" "$rust_failed" "$rust_status" "$secs s (build and both suites)"
# The C suite's own status: its failures, or no result at all when cargo test stopped early.
# Its passes are the checks tests/c/capi_test.c and tests/c/bad_inputs_test.c counted ("PASSED <n>", kept by
# tests/c_api.rs), beside the test functions of tests/c_api.rs.
c_status=0
grep -q '^ *Running tests/c_api.rs' "$LOGS/cargo-test.log" || c_status=$status
for C_OUT in "$ROOT/target/c-api-test/capi_test.out" "$ROOT/target/c-api-test/bad_inputs_test.out"; do
    if [ "$c_failed" = 0 ] && [ -f "$C_OUT" ] && [ "$C_OUT" -nt "$LOGS/build.log" ]; then
        c_checks="$(sed -n 's/^PASSED \([0-9][0-9]*\).*/\1/p' "$C_OUT" | tail -n 1)"
        [ -z "$c_checks" ] || c_passed=$((c_passed + c_checks))
    fi
done

# --- C under valgrind, in the background while Go and Swift run -------------------------------
t_mem=$SECONDS
cargo test --locked --test c_api -- --exact c_tests_pass_memcheck --nocapture >"$LOGS/memcheck.log" 2>&1 &
memcheck_pid=$!

# --- Go ------------------------------------------------------------------------------------------
t0=$SECONDS
bash scripts/test_go.sh -json 2>&1 | tee "$LOGS/go-test.json" | jq -Rr --unbuffered '
    . as $line | (try fromjson catch null) as $e
    | if $e == null then $line                                   # vet, build output
      elif $e.Action == "output" and ($e.Test == null or ($e.Output | test("^\\s*--- (FAIL|SKIP)|panic|_test.go:"))) then $e.Output | rtrimstr("\n")
      else empty end'
status=${PIPESTATUS[0]}
go_passed=$(jq -R 'fromjson? | select(.Test != null and .Action == "pass")' "$LOGS/go-test.json" | jq -s length)
go_failed=$(jq -R 'fromjson? | select(.Test != null and .Action == "fail")' "$LOGS/go-test.json" | jq -s length)
record Go "$go_passed" "$go_failed" "$status" "$((SECONDS - t0)) s"

# --- Swift -----------------------------------------------------------------------------------------
t0=$SECONDS
bash scripts/test_swift.sh 2>&1 | tee "$LOGS/swift-test.log"
status=${PIPESTATUS[0]}
# XCTest's last "Executed N tests, with M failures" line is the whole run's.
read -r sw_passed sw_failed < <(grep -E 'Executed [0-9]+ tests?, with [0-9]+ failures?' "$LOGS/swift-test.log" | tail -n 1 \
    | sed -E 's/.*Executed ([0-9]+) tests?, with ([0-9]+) failures?.*/\1 \2/' | awk '{ print $1 - $2, $2 } END { if (NR == 0) print 0, 0 }')
record Swift "$sw_passed" "$sw_failed" "$status" "$((SECONDS - t0)) s"

# --- Fuzz: build the fuzz targets, replay their seeds and regression inputs, then a brief
# run of each (scripts/fuzz.sh; the long runs are done by hand, see docs/reliability.md) ---
t0=$SECONDS
MLXRUN_FUZZ_NO_SETUP=1 bash scripts/fuzz.sh --replay 2>&1 | tee "$LOGS/fuzz.log"
fuzz_status=${PIPESTATUS[0]}
if [ "$fuzz_status" = 0 ]; then
    MLXRUN_FUZZ_NO_SETUP=1 bash scripts/fuzz.sh --seconds "${MLXRUN_FUZZ_SECONDS:-10}" 2>&1 | tee -a "$LOGS/fuzz.log"
    fuzz_status=${PIPESTATUS[0]}
fi
fuzz_passed=$(grep -c '^fuzz.sh: .* passed$' "$LOGS/fuzz.log")
fuzz_failed=$(grep -c '^fuzz.sh: .* FAILED$' "$LOGS/fuzz.log")
fuzz_secs=$((SECONDS - t0))

wait "$memcheck_pid"
mem_status=$?
mem_secs=$((SECONDS - t_mem))
echo "== C under valgrind ($LOGS/memcheck.log) =="
grep -E 'ERROR SUMMARY|definitely lost|memcheck skipped|^test |panicked' "$LOGS/memcheck.log" || true
if grep -q '^test c_tests_pass_memcheck \.\.\. ok' "$LOGS/memcheck.log"; then
    c_passed=$((c_passed + 1))
else
    c_failed=$((c_failed + 1)); [ "$c_status" = 0 ] && c_status=$mem_status
fi
record C "$c_passed" "$c_failed" "$c_status" "(in Rust's time; C checks counted; memcheck $mem_secs s beside Go and Swift)"
# Recorded last, listed second: Rust, C, Go, Swift.
SUMMARY=("${SUMMARY[0]}" "${SUMMARY[3]}" "${SUMMARY[1]}" "${SUMMARY[2]}")
record Fuzz "$fuzz_passed" "$fuzz_failed" "$fuzz_status" "$fuzz_secs s (build, replay, ${MLXRUN_FUZZ_SECONDS:-10} s per target)"

echo
echo "== test suites =="
printf '%s\n' "${SUMMARY[@]}"
echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
[ "$TOTAL_FAILED" = 0 ]
