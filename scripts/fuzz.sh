#!/usr/bin/env bash
# Coverage-guided fuzzing of the library's input parsers (libFuzzer, AddressSanitizer).
#
#   scripts/fuzz.sh [--seconds N] [--jobs N] [TARGET...]   fuzz each target N seconds
#                                                           (default 60), one after another
#   scripts/fuzz.sh --replay [TARGET...]     run every seed and regression input once
#   scripts/fuzz.sh --build                  build only
#   scripts/fuzz.sh --merge [TARGET...]      minimize fuzz/corpus/TARGET with what the
#                                            runs found (fuzz/target/corpus/TARGET)
#
# Targets (fuzz/fuzz_targets/, their work in fuzz/entries/): safetensors_header,
# config_json, gguf_reader, tokenizer, chat_template, capi_params; none named: all.
# The fuzz crate (fuzz/) is its own cargo workspace, built with the flags cargo-fuzz
# passes (sanitizer coverage, AddressSanitizer, --cfg fuzzing) by plain cargo: the stable
# toolchain accepts the sanitizer flag with RUSTC_BOOTSTRAP=1, so nothing else is
# installed. Seeds: fuzz/corpus/TARGET (committed, small); what a run finds goes to
# fuzz/target/corpus/TARGET and crashes to fuzz/artifacts/TARGET/ (both git-ignored).
# A crash found is fixed in the library and its input kept in fuzz/regressions/TARGET/,
# which tests/fuzz_regressions.rs replays in `cargo test`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ALL=(safetensors_header config_json gguf_reader tokenizer chat_template capi_params)
mode=fuzz seconds=60 jobs=1 targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --jobs) jobs="$2"; shift 2 ;;
        --replay) mode=replay; shift ;;
        --build) mode=build; shift ;;
        --merge) mode=merge; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${ALL[@]}")
for t in "${targets[@]}"; do
    [[ " ${ALL[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target $t (targets: ${ALL[*]})" >&2; exit 2; }
done

# The venv with libmlx.so and the fixture tokenizers and templates the targets read.
[ -n "${MLXRUN_FUZZ_NO_SETUP:-}" ] || bash scripts/setup.sh >&2

TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
BIN="$ROOT/fuzz/target/$TRIPLE/release"
# cargo-fuzz's flags (sanitizer coverage with inline 8-bit counters, the PC table and
# compare tracing; AddressSanitizer). With --target they reach only the crates of the
# binaries, not build scripts. OpenBLAS is left out: no target multiplies matrices.
export RUSTC_BOOTSTRAP=1 MLXRUN_NO_OPENBLAS=1
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Zsanitizer=address -Cforce-frame-pointers"
t0=$SECONDS
cargo build --locked --release --manifest-path fuzz/Cargo.toml --target "$TRIPLE" --bins
echo "fuzz.sh: built in $((SECONDS - t0)) s" >&2
[ "$mode" != build ] || exit 0

# Model loads in capi_params print nothing; ASan's leak check stays off (MLX keeps
# process-lifetime allocations that are not leaks).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}"
export OPENBLAS_NUM_THREADS=1
status=0
for t in "${targets[@]}"; do
    seeds="fuzz/corpus/$t" regress="fuzz/regressions/$t" work="fuzz/target/corpus/$t"
    mkdir -p "$seeds" "$regress" "$work" "fuzz/artifacts/$t"
    case "$mode" in
        replay)
            echo "== $t: replaying $(ls "$seeds" | wc -l) seeds and $(ls "$regress" | wc -l) regression inputs" >&2
            if "$BIN/$t" -runs=0 -rss_limit_mb=4096 "$seeds" "$regress" >"fuzz/target/$t.log" 2>&1; then
                echo "fuzz.sh: $t passed"
            else
                tail -n 30 "fuzz/target/$t.log"; echo "fuzz.sh: $t FAILED"; status=1
            fi ;;
        merge)
            rm -rf "$seeds.merged"; mkdir -p "$seeds.merged"
            "$BIN/$t" -merge=1 -rss_limit_mb=4096 "$seeds.merged" "$seeds" "$work" 2>&1 | tail -n 2
            rm -rf "$seeds"; mv "$seeds.merged" "$seeds"
            echo "== $t: $(ls "$seeds" | wc -l) inputs, $(du -sk "$seeds" | cut -f1) KiB" >&2 ;;
        fuzz)
            echo "== $t: fuzzing $seconds s with $jobs job(s)" >&2
            args=(-max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -max_len=65536
                  -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1)
            if [ "$jobs" -gt 1 ]; then args+=(-fork="$jobs" -ignore_crashes=0); fi
            if "$BIN/$t" "${args[@]}" "$work" "$seeds" "$regress" >"fuzz/target/$t.log" 2>&1; then
                grep -E '^(stat::number_of_executed_units|#[0-9]+ *DONE)' "fuzz/target/$t.log" | tail -n 2
                echo "fuzz.sh: $t passed"
            else
                tail -n 40 "fuzz/target/$t.log"; echo "fuzz.sh: $t FAILED"; status=1
            fi ;;
    esac
done
if [ "$mode" = fuzz ] && [ -n "$(ls -A fuzz/artifacts 2>/dev/null | head -n 1)" ]; then
    find fuzz/artifacts -type f | sed 's/^/fuzz.sh: artifact: /' >&2
fi
exit "$status"
