#!/usr/bin/env bash
# qlib GPU check: builds the CUDA tests (tests/cuda/*_test.cu) and the benchmark
# (bench/cuda/gpu_bench.cu) directly with nvcc -- no CMake, no Catch2, no Google Benchmark:
# the tests use tests/cuda/mini_check.hpp (-DQLIB_CUDA_TEST_STANDALONE) and the benchmark
# needs only CUB from the toolkit -- then runs them and prints the benchmark's ratios.
#
#   scripts/gpu_check.sh [BUILD_DIR]        (default: a fresh temporary folder)
#
# Environment: NVCC (default: nvcc on PATH, else /usr/local/cuda/bin/nvcc), JOBS (parallel
# nvcc runs, default nproc), QLIB_BENCH_ARGS (extra gpu_bench arguments, e.g. "--strict"),
# QLIB_EXHAUSTIVE=1 (the host test also checks all 2^32 floats: about half a minute),
# QLIB_MEMCHECK=1 (run the device tests under compute-sanitizer memcheck: slower).
# Exit status: 0 when every check passed, or when there is no CUDA device (the device
# tests and the benchmark print "SKIPPED: no CUDA device"; the host test still runs);
# 1 when a build, a test or the benchmark's sanity checks failed. Performance targets are
# reported (MET / MISSED) without failing the script unless QLIB_BENCH_ARGS has --strict.
# Takes about a minute on 16 cores (the builds), a few seconds to run.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$(mktemp -d /tmp/qlib-gpu-check.XXXXXX)}"
mkdir -p "$build"
nvcc="${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
jobs="${JOBS:-$(nproc 2>/dev/null || echo 4)}"
status=0

echo "== qlib GPU check, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "repository: $root"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi -L || echo "nvidia-smi -L failed"
  nvidia-smi --query-gpu=driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || true
else
  echo "nvidia-smi: not found"
fi
if [[ ! -x "$nvcc" ]]; then
  echo "FAILED: nvcc not found (set NVCC)"
  exit 1
fi
"$nvcc" --version | tail -n 2

# Architectures: PTX for compute_75 (runs anywhere CUDA 13 does, compiled by the driver)
# plus SASS for sm_90 (H100/H200) and for the GPU found here, if nvcc knows it.
gencode=(-gencode "arch=compute_75,code=compute_75" -gencode "arch=compute_90,code=sm_90")
cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .')"
if [[ -n "$cap" && "$cap" != "90" ]] && "$nvcc" --list-gpu-code 2>/dev/null | grep -qx "sm_$cap"; then
  gencode+=(-gencode "arch=compute_$cap,code=sm_$cap")
fi
# No fast math: the kernels must match the CPU bit for bit. Warnings are shown but do not
# stop the check (the CMake build enforces them; the GPU machine's host compiler may differ).
flags=(-std=c++17 -O3 "${gencode[@]}" -I"$root/include" -I"$root/tests" -Xcompiler=-Wall,-Wextra)

echo
echo "== build ($jobs parallel nvcc jobs) into $build"
start=$(date +%s)
programs=(host histogram minmax fake_quant gpu_bench)
pids=()
for p in "${programs[@]}"; do
  while (( $(jobs -rp | wc -l) >= jobs )); do sleep 0.2; done
  if [[ "$p" == gpu_bench ]]; then
    src="$root/bench/cuda/gpu_bench.cu"
    extra=()
  else
    src="$root/tests/cuda/${p}_test.cu"
    extra=(-DQLIB_CUDA_TEST_STANDALONE)
  fi
  "$nvcc" "${flags[@]}" "${extra[@]}" "$src" -o "$build/$p" >"$build/$p.build.log" 2>&1 &
  pids+=($!)
done
for i in "${!programs[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "FAILED: build of ${programs[$i]}:"
    cat "$build/${programs[$i]}.build.log"
    status=1
  elif [[ -s "$build/${programs[$i]}.build.log" ]]; then
    echo "warnings building ${programs[$i]}:"
    head -n 40 "$build/${programs[$i]}.build.log"
  fi
done
echo "built in $(( $(date +%s) - start )) s"
if (( status != 0 )); then
  echo "== result: FAILED (build)"
  exit 1
fi

echo
echo "== tests"
skipped=0
for p in host histogram minmax fake_quant; do
  echo "-- $p"
  t0=$(date +%s%N)
  if [[ "${QLIB_MEMCHECK:-0}" == 1 && "$p" != host ]] && command -v compute-sanitizer >/dev/null 2>&1; then
    compute-sanitizer --tool memcheck --error-exitcode 3 "$build/$p"
  else
    "$build/$p"
  fi
  rc=$?
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  case $rc in
    0) echo "-- $p: passed (${ms} ms)" ;;
    77) echo "-- $p: skipped"; skipped=$((skipped + 1)) ;;
    *) echo "-- $p: FAILED (exit $rc)"; status=1 ;;
  esac
done

echo
echo "== benchmark"
# shellcheck disable=SC2086
"$build/gpu_bench" ${QLIB_BENCH_ARGS:-}
rc=$?
case $rc in
  0) ;;
  77) skipped=$((skipped + 1)) ;;
  *) echo "benchmark: FAILED (exit $rc)"; status=1 ;;
esac

echo
if (( status != 0 )); then
  echo "== result: FAILED"
elif (( skipped > 0 )); then
  echo "== result: no CUDA device: the device checks were skipped (host checks passed)"
else
  echo "== result: all GPU checks passed"
fi
exit $status
