# The two commands of the README, and a few more. CMake builds underneath.
#   make demo   build, then run `kmm demo` (every layer at work, with stats)
#   make test   build and run every test under ctest
#   make bench  build in Release and run the benchmarks in bench/
#   make misuse-compare   the misuse suite under glibc, jemalloc, mimalloc, tcmalloc and kmm
#   make bench-suite  whole programs under glibc, jemalloc, mimalloc, tcmalloc
#               and kmm (bench/suite; SUITE_ARGS="--check" for the quick check)
#   make sanitize-address / sanitize-thread   the tests under ASan+UBSan / TSan
#   make fuzz   the libFuzzer targets for FUZZ_SECONDS each (clang)
#   make guest  boot kmm as the memory manager of a small x86-64 kernel under
#               QEMU and run its tests there (ACCEL=tcg, the default, or kvm)
# Missing Debian packages are installed when run as root; otherwise the exact
# apt-get command is printed.

SHELL := /bin/bash

BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
SANITIZE ?=
FUZZ_SECONDS ?= 30
ACCEL ?= tcg
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

PKGS_BUILD := cmake make gcc pkg-config liblz4-dev libzstd-dev
PKGS_GUEST := $(PKGS_BUILD) qemu-system-x86
PKGS_TEST  := $(PKGS_BUILD) libcmocka-dev python3 git sqlite3 g++ qemu-system-x86
PKGS_FUZZ  := $(PKGS_BUILD) clang libclang-rt-14-dev libcmocka-dev
PKGS_BENCH := $(PKGS_BUILD) libmimalloc-dev libjemalloc-dev libgoogle-perftools-dev
PKGS_SUITE := $(PKGS_BENCH) gnuplot-nox sqlite3 libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4 python3

# $(call ensure,packages): install what dpkg does not have, or say how to.
define ensure
	@missing=""; \
	if ! command -v dpkg-query >/dev/null 2>&1; then \
	  echo "kmm: not a Debian system; make sure these are installed: $(1)"; exit 0; fi; \
	for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "kmm: installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "kmm: missing Debian packages:$$missing"; \
	    echo "kmm: run: sudo apt-get install -y --no-install-recommends$$missing"; exit 1; \
	  fi; \
	fi
endef

CMAKE_FLAGS = -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DKMM_SANITIZE=$(SANITIZE)

.PHONY: all build demo test guest deps-guest bench bench-suite misuse-compare sanitize-address sanitize-thread fuzz install clean deps-test deps-bench deps-suite deps-fuzz

all: build

build:
	$(call ensure,$(PKGS_BUILD))
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) -DKMM_TESTS=OFF >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target kmm_tool kmm kmm_static kmm_malloc_shim

demo: build
	@$(BUILD)/kmm demo

deps-test:
	$(call ensure,$(PKGS_TEST))

test: deps-test
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) -DKMM_TESTS=ON >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

deps-guest:
	$(call ensure,$(PKGS_GUEST))

# The guest kernel: libkmm_freestanding.a (the very archive test_freestanding
# links) with src/platform/guest, booted by QEMU (tests/guest/run).
guest: deps-guest
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) -DKMM_TESTS=ON >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target kmm_guest64 test_freestanding
	@ACCEL=$(ACCEL) tests/guest/run $(BUILD)/tests/guest/kmm-guest.elf $(GUEST_ARGS)
	@tests/guest/same_archive $(BUILD)

sanitize-address:
	@$(MAKE) --no-print-directory test BUILD=build-asan SANITIZE=address BUILD_TYPE=Debug

sanitize-thread:
	@$(MAKE) --no-print-directory test BUILD=build-tsan SANITIZE=thread BUILD_TYPE=RelWithDebInfo

deps-bench:
	$(call ensure,$(PKGS_BENCH))

bench: deps-bench
	@cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DKMM_TESTS=OFF -DKMM_BENCH=ON >/dev/null
	@cmake --build build-release -j $(JOBS)
	@build-release/bench/pages $(BENCH_ARGS)
	@build-release/bench/malloc $(BENCH_ARGS)
	@build-release/bench/vmalloc $(BENCH_ARGS)
	@build-release/bench/zsmalloc $(BENCH_ARGS)
	@build-release/bench/unmapped $(BENCH_ARGS)

# The misuse suite under glibc, jemalloc, mimalloc, tcmalloc, kmm and kmm
# hardened: a table of what each catches (bench/misuse/compare).
misuse-compare: deps-test deps-bench
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) -DKMM_TESTS=ON >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target misuse_cases
	@bench/misuse/compare $(BUILD)
deps-suite:
	$(call ensure,$(PKGS_SUITE))

bench-suite: deps-suite
	@cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DKMM_TESTS=OFF -DKMM_BENCH=ON >/dev/null
	@cmake --build build-release -j $(JOBS) --target bench_suite
	@build-release/bench/suite $(SUITE_ARGS)

deps-fuzz:
	$(call ensure,$(PKGS_FUZZ))

fuzz: deps-fuzz
	@cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DKMM_SANITIZE=address -DKMM_FUZZ=ON -DKMM_BENCH=OFF >/dev/null
	@cmake --build build-fuzz -j $(JOBS) --target fuzz_page fuzz_slab fuzz_vm fuzz_zs fuzz_unmapped fuzz_execmem fuzz_secret
	@for t in page slab vm zs unmapped execmem secret; do \
	  mkdir -p build-fuzz/corpus/$$t; \
	  echo "== fuzz_$$t ($(FUZZ_SECONDS) s)"; \
	  build-fuzz/tests/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 build-fuzz/corpus/$$t 2>&1 | tail -n 12; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

install: build
	@cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX),)

clean:
	rm -rf build build-asan build-tsan build-release build-fuzz
