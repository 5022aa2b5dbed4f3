#!/usr/bin/env bash
# Runs each fuzz target in fuzz/ (libFuzzer, coverage-guided; as many at once as there are
# cores) for SECONDS (default 60) on its corpus in fuzz/corpus/TARGET. New inputs that reach
# new code go to target/fuzz/new/TARGET, so a run (CI's among them) leaves the committed corpus
# as it is; `--minimize` merges them into fuzz/corpus/TARGET (then commit it). A crash fails
# the run and leaves the input in fuzz/artifacts/TARGET.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#   scripts/fuzz.sh --minimize [TARGET...]   the corpus and the new inputs, shrunk to the inputs
#                                           that add coverage, as fuzz/corpus/TARGET
# Built with the instrumentation `cargo fuzz` uses (no sanitizer, so stable Rust does), in a
# target dir of its own so the main build is not rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."
minimize=false
if [ "${1:-}" = "--minimize" ]; then
  minimize=true
  shift
  secs=0
else
  secs="${1:-60}"
  shift || true
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(auth_reply rules tc3 admin_request)
fi
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
target_dir="$PWD/target/fuzz"
# An explicit --target keeps the flags off build scripts (which must not be instrumented).
triple="$(rustc -vV | sed -n 's/^host: //p')"
cargo build --manifest-path fuzz/Cargo.toml --release --target-dir "$target_dir" \
  --target "$triple" --bins
bin_dir="$target_dir/$triple/release"
if $minimize; then
  for t in "${targets[@]}"; do
    out="$(mktemp -d)"
    mkdir -p "$target_dir/new/$t"
    "$bin_dir/$t" -merge=1 -use_counters=0 -use_cmp=0 "$out" "fuzz/corpus/$t" "$target_dir/new/$t" 2>&1 |
      grep -E "MERGE-OUTER: [0-9]+ new files" || true
    rm -rf "fuzz/corpus/$t" "$target_dir/new/$t" && mv "$out" "fuzz/corpus/$t"
  done
  exit 0
fi
# One target a core at a time: each gets its SECONDS of a whole core, the run less wall time.
fuzz_one() {
  local t=$1
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t" "$target_dir/new/$t"
  "$bin_dir/$t" -max_total_time="$secs" -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/" "$target_dir/new/$t" "fuzz/corpus/$t" \
    > "$target_dir/$t.log" 2>&1 || true
}
cores=$(nproc)
running=0
for t in "${targets[@]}"; do
  echo "fuzz: $t for ${secs}s"
  fuzz_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$cores" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait
for t in "${targets[@]}"; do
  echo "fuzz: $t"
  grep -E "^(stat::number_of_executed_units|stat::new_units_added|==|SUMMARY|Done)|panicked" \
    "$target_dir/$t.log" || true
  # libFuzzer exits non-zero on a crash; the artifact says so whatever its exit status.
  if compgen -G "fuzz/artifacts/$t/crash-*" > /dev/null; then
    echo "fuzz: $t crashed; inputs in fuzz/artifacts/$t (its output: $target_dir/$t.log)" >&2
    exit 1
  fi
done
