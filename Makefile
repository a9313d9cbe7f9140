# lorasched: `make run` installs what is missing, builds (Release) and runs the quickstart;
# `make test` builds and runs the whole test suite through ctest.
JOBS ?= $(shell nproc)
BUILD := build/release
CTEST_ARGS ?=

.PHONY: all deps configure build run test test-asan bench install clean

all: build

deps:
	@scripts/install-deps

configure: deps
	@cmake --preset release >/dev/null

build: configure
	cmake --build --preset release -j $(JOBS)

run: build
	$(BUILD)/lorasched run experiments/quickstart.toml
	@/usr/bin/python3 scripts/plot.py results/quickstart.h5 --out results/quickstart || \
	  echo "(plots skipped: python3-h5py / python3-matplotlib missing)"

test: build
	ctest --preset release -j $(JOBS) $(CTEST_ARGS)

# The test suite under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: deps
	cmake --preset asan >/dev/null
	cmake --build --preset asan -j $(JOBS)
	ctest --preset asan -j $(JOBS) $(CTEST_ARGS)

bench: build
	$(BUILD)/bench/bench_kernels_cpu --benchmark_min_time=0.2

PREFIX ?= /usr/local
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf build
