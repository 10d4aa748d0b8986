#!/usr/bin/env bash
# The GPU run, for a machine with a CUDA GPU (written for one H200, 16 cores, PyTorch installed,
# no network): builds metagrad in Release with the CUDA backend, runs the GPU test suite, then
# measures, on cuda:0:
#   1. GEMM GFLOP/s, metagrad's matmul beside cuBLAS called directly, n = 512 .. 8192
#   2. memory-bound kernels in GB/s beside a device-to-device cudaMemcpy
#   3. MAML meta-steps W-sin, W-omni, W-tf (bench/bench_meta.cpp's workloads): metagrad on the
#      GPU, looped, task-batched and task-batched replayed from a CUDA graph, beside PyTorch on
#      the same GPU (bench/gpu/torch_meta.py) on the same parameters and tasks
# and prints one table last. Everything it writes goes under $OUT (default build/gpu-bench/out).
#
#   OUT=/some/dir bench/gpu/run.sh
#   MG_GPU_DEADLINE_S=450 bench/gpu/run.sh    # every step's limit cut to end by then (seconds)
#
# Budget: about 3 min to build on 16 cores, under 5 min of measurement. Each step has its own
# time limit, and a failed step is reported in the table without stopping the others.
# No network: CMake must not need to download anything. doctest (the test framework) is looked
# for on the system, then in build/third_party/doctest/doctest.h (copy it there and carry
# build/third_party along when the GPU machine has none); without it the tests are skipped.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT="$PWD"
OUT="${OUT:-$ROOT/build/gpu-bench/out}"
BUILD="${MG_GPU_BUILD_DIR:-$ROOT/build/gpu-bench/release}"
JOBS="${JOBS:-$(nproc)}"
mkdir -p "$OUT" "$BUILD"
START=$SECONDS
declare -a SUMMARY=()

DEADLINE="${MG_GPU_DEADLINE_S:-0}"
# A step's time limit: its own, or what is left before the deadline (less 20 s for the table).
limit_for() {
  local limit="$1"
  if ((DEADLINE > 0)); then
    local left=$((DEADLINE - (SECONDS - START) - 20))
    ((left < limit)) && limit=$left
    ((limit < 1)) && limit=1
  fi
  echo "$limit"
}

log() { printf '[gpu-bench %4ds] %s\n' "$((SECONDS - START))" "$*" | tee -a "$OUT/run.log"; }
note() { SUMMARY+=("$*"); log "$*"; }

# ---- prerequisites ---------------------------------------------------------------------------
if [[ -x /usr/local/cuda/bin/nvcc ]]; then export PATH="$PATH:/usr/local/cuda/bin"; fi
{
  echo "date: $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>&1 || true
  command -v nvcc >/dev/null && nvcc --version | tail -1
  cmake --version | head -1
  g++ --version | head -1
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1 || true
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

GENERATOR="Unix Makefiles"
command -v ninja >/dev/null && GENERATOR="Ninja"

TESTS=ON
DOCTEST_ARGS=()
if [[ ! -f /usr/include/doctest/doctest.h && ! -f /usr/local/include/doctest/doctest.h ]]; then
  if [[ -f "$ROOT/build/third_party/doctest/doctest.h" ]]; then
    # A package config of our own around the carried header: find_package(doctest) then succeeds.
    mkdir -p "$BUILD/doctest-config"
    cat > "$BUILD/doctest-config/doctestConfig.cmake" <<EOF
if(NOT TARGET doctest::doctest)
  add_library(doctest::doctest INTERFACE IMPORTED)
  set_target_properties(doctest::doctest PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "$ROOT/build/third_party")
endif()
EOF
    DOCTEST_ARGS=(-Ddoctest_DIR="$BUILD/doctest-config")
  else
    TESTS=OFF
    note "tests: SKIPPED (no doctest on this machine and none in build/third_party/doctest/)"
  fi
fi

# ---- build -------------------------------------------------------------------------------------
log "configure ($GENERATOR, Release, CUDA on, tests $TESTS)"
if ! cmake -S "$ROOT" -B "$BUILD" -G "$GENERATOR" -DCMAKE_BUILD_TYPE=Release -DMG_CUDA=ON \
    -DMG_BUILD_TESTS="$TESTS" -DMG_BUILD_EXAMPLES=OFF -DMG_BUILD_APPS=OFF -DMG_BUILD_BENCH=OFF \
    -DMG_BUILD_GPU_BENCH=ON -DMG_WERROR=OFF -DFETCHCONTENT_FULLY_DISCONNECTED=ON "${DOCTEST_ARGS[@]}" \
    > "$OUT/configure.log" 2>&1; then
  tail -30 "$OUT/configure.log"
  note "configure: FAILED (see configure.log)"
  printf '%s\n' "${SUMMARY[@]}" | tee "$OUT/summary.txt"
  exit 1
fi
TARGETS=(bench_gpu)
[[ "$TESTS" == ON ]] && TARGETS+=(cuda_test gradcheck_test memory_test errors_test)
log "build ${TARGETS[*]} with $JOBS jobs"
if ! timeout "$(limit_for 420)" cmake --build "$BUILD" --parallel "$JOBS" --target "${TARGETS[@]}" > "$OUT/build.log" 2>&1; then
  grep -E "error|Error" "$OUT/build.log" | head -30
  note "build: FAILED (see build.log)"
  printf '%s\n' "${SUMMARY[@]}" | tee "$OUT/summary.txt"
  exit 1
fi
note "build: ok ($((SECONDS - START)) s, $(grep -c 'warning:' "$OUT/build.log") compiler warnings; see build.log)"

# ---- tests ---------------------------------------------------------------------------------------
if [[ "$TESTS" == ON ]]; then
  log "tests"
  # The GPU suite in full; the CPU suites that also exercise the CUDA paths (gradcheck's
  # cpu -> cuda -> cpu entry, device errors, allocator statistics).
  if timeout "$(limit_for 240)" ctest --test-dir "$BUILD" --output-on-failure -j 4 \
      -R '^(cuda_test|gradcheck_test|memory_test|errors_test)$' > "$OUT/tests.log" 2>&1; then
    note "tests: passed ($(grep -Eo '[0-9]+ tests? (passed|failed)|[0-9]+% tests passed.*' "$OUT/tests.log" | tail -1))"
  else
    note "tests: FAILED (see tests.log)"
  fi
  grep -E "cuda_test|Skipped|Passed|Failed" "$OUT/tests.log" | head -10
fi

# ---- measurements ----------------------------------------------------------------------------
BENCH="$BUILD/bench/bench_gpu"
run_part() {  # name, time limit in seconds, command...
  local name="$1" limit
  limit="$(limit_for "$2")"
  shift 2
  log "$name"
  if timeout "$limit" "$@" >> "$OUT/results.log" 2> "$OUT/$name.err"; then
    return 0
  fi
  note "$name: FAILED or timed out after ${limit}s (see $name.err)"
  tail -5 "$OUT/$name.err"
  return 1
}
: > "$OUT/results.log"
run_part gemm 120 "$BENCH" gemm "$OUT"
run_part bandwidth 60 "$BENCH" bandwidth "$OUT"
for w in W-sin W-omni W-tf; do
  run_part "meta-$w" 90 "$BENCH" meta "$w" "$OUT"
done
if python3 -c 'import torch; assert torch.cuda.is_available()' 2> /dev/null; then
  for w in W-sin W-omni W-tf; do
    if [[ -f "$OUT/$w.safetensors" ]]; then
      run_part "torch-$w" 90 python3 "$ROOT/bench/gpu/torch_meta.py" "$OUT/$w.safetensors" "$w"
    fi
  done
else
  note "torch: SKIPPED (no PyTorch with CUDA)"
fi

# ---- the table -------------------------------------------------------------------------------
python3 - "$OUT" <<'PY' | tee "$OUT/table.txt"
import re, sys
out = sys.argv[1]
rows = []
for line in open(f"{out}/results.log"):
    if line.startswith("RESULT "):
        rows.append(line.split()[1:])
meta = {}
print(f"{'part':<10} {'case':<34} {'value':>12} {'unit':<9} {'reference':>11} {'ratio':>7}")
for r in rows:
    part, name = r[0], r[1]
    if len(r) >= 4 and re.match(r"^-?[0-9.]+$", r[2]):
        value, unit = float(r[2]), r[3]
        ref = float(r[5]) if len(r) >= 8 else None
        ratio = float(r[7]) if len(r) >= 8 else None
        print(f"{part:<10} {name:<34} {value:>12.2f} {unit:<9} {'' if ref is None else f'{ref:11.2f}':>11} "
              f"{'' if ratio is None else f'{ratio:7.3f}':>7}")
        if part in ("meta", "torch") and unit == "ms/step":
            meta[name] = value
    else:
        print(f"{part:<10} {' '.join(r[1:])}")
# metagrad on the GPU against PyTorch on the GPU, per workload.
for w in ("W-sin", "W-omni", "W-tf"):
    torch_ms = meta.get(f"{w}/torch-cuda/looped")
    for path in ("looped", "batched", "graph"):
        mg_ms = meta.get(f"{w}/mg-cuda/{path}")
        if mg_ms and torch_ms:
            print(f"{'vs-torch':<10} {w + '/' + path + ' / torch looped':<34} {mg_ms / torch_ms:>12.3f} x time")
PY
{
  echo
  printf '%s\n' "${SUMMARY[@]}"
  echo "total: $((SECONDS - START)) s"
} | tee "$OUT/summary.txt"
