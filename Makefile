# lorasched: `make run` installs what is missing, builds (Release) and runs the quickstart;
# `make test` builds and runs the whole test suite through ctest.
JOBS ?= $(shell nproc)
BUILD := build/release
CTEST_ARGS ?=

.PHONY: all deps configure build run test test-asan fuzz bench install clean fidelity study study-quick bounds

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

# The fuzz targets of the input parsers (docs/hardening.md): clang + libFuzzer, ASan + UBSan;
# builds them and runs each for FUZZ_SECONDS (label fuzz-long). Findings (crashing inputs) go
# to build/fuzz/tests/fuzz/findings/, new coverage to build/fuzz/tests/fuzz/corpus/.
FUZZ_SECONDS ?= 60
fuzz:
	scripts/install-deps --fuzz
	cmake --preset fuzz -DLORASCHED_FUZZ_SECONDS=$(FUZZ_SECONDS) >/dev/null
	cmake --build --preset fuzz -j $(JOBS) --target fuzz_targets
	ctest --test-dir build/fuzz -L fuzz-long -j $(JOBS) --output-on-failure $(CTEST_ARGS)

bench: build
	$(BUILD)/bench/bench_kernels_cpu --benchmark_min_time=0.2

# Fidelity of the cost model (docs/costmodel.md): a fresh profile of this machine, then the
# same workload on the cpu executor and on the costmodel executor with that profile, and
# the error of the costmodel run against the cpu run. Run it on an otherwise idle machine.
fidelity: build
	$(BUILD)/lorasched profile --model tiny --adapters-ranks 8,16,64 --threads 1 -o results/profile-tiny.json
	$(BUILD)/lorasched run experiments/fidelity.toml
	$(BUILD)/lorasched report results/fidelity.h5

PREFIX ?= /usr/local
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf build

# The study (docs/study.md): every workload of experiments/study/ at fractions of its measured
# capacity, both cost regimes, dLoRA's thresholds tuned on training seeds, every policy on 20
# held-out seeds, the bound bracket, the phase map, and migration end to end and on cluster
# snapshots; regenerates docs/study.md and docs/study/*.png from scratch (about 30 minutes on 2
# cores). Each sweep runs its points in JOBS worker processes (lorasched run -j; 0: one per core).
JOBS ?= 0
study: build
	/usr/bin/python3 scripts/study.py --lorasched $(BUILD)/lorasched --bench $(BUILD)/bench/bench_migration --jobs $(JOBS)

# The same pipeline on few seeds, points and requests and the trimmed trace fixtures (about a
# minute): a smoke test whose page goes to $(BUILD)/study-quick/, never to docs/. ctest runs it
# (test study.quick) so the study's path cannot rot.
study-quick: build
	/usr/bin/python3 scripts/study.py --quick --lorasched $(BUILD)/lorasched --bench $(BUILD)/bench/bench_migration \
	  --jobs $(JOBS) --results $(BUILD)/study-quick/results --out $(BUILD)/study-quick/study.md

# Every policy's gap to the exact optimum of small worker-level instances (docs/bounds.md):
# runs experiments/bound/small.toml, solves each instance with `lorasched bound --exact` and
# regenerates the table of docs/bounds.md (a few minutes on 2 cores).
bounds: build
	/usr/bin/python3 scripts/bound_gap.py --lorasched $(BUILD)/lorasched
