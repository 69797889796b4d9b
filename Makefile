# qlib quick start: `make demo` and `make test` (each installs what is missing first).
# Debian packages are installed with apt-get when missing (as root; `apt-get update` runs
# first). Build folders: build/ (g++, Release), build-clang/ (clang, the strict header
# checks), build-asan/ (ASan + UBSan).
SHELL := /bin/bash
JOBS ?= $(shell nproc)
BUILD ?= build
CMAKE_FLAGS ?=

# Packages the build and tests use. The core needs none of them.
DEB_PACKAGES := cmake g++ clang catch2 libbenchmark-dev libeigen3-dev xtensor-dev \
  nlohmann-json3-dev libopenmpi-dev openmpi-bin python3

.PHONY: deps configure build test demo bench clean

deps:
	@bash scripts/install_deps.sh $(DEB_PACKAGES)

configure: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) > $(BUILD).configure.log 2>&1 \
	  || { cat $(BUILD).configure.log; exit 1; }

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

demo: build
	bash scripts/demo.sh $(BUILD)

bench: deps
	cmake -S . -B $(BUILD)-bench -DCMAKE_BUILD_TYPE=Release -DQLIB_BUILD_BENCH=ON > /dev/null
	cmake --build $(BUILD)-bench -j $(JOBS) --target qlib_benchmarks
	$(BUILD)-bench/bench/qlib_benchmarks --benchmark_min_time=0.2

clean:
	rm -rf build build-* *.configure.log
