# The two commands of the quick start, and a few helpers.
#   make demo   builds everything (release) in $(BUILD) and runs the demo
#   make test   builds in $(TEST_BUILD), with the library in cargo's dev
#               profile that cargo test shares, and runs every test
#   make fuzz   builds the fuzz targets against a coverage-instrumented
#               library in $(FUZZ_BUILD) and runs each for FUZZ_SECONDS
BUILD ?= build
TEST_BUILD ?= build-test
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= $(patsubst fuzz/fuzz_%.cpp,%,$(wildcard fuzz/fuzz_*.cpp))
MAKEFLAGS += --no-print-directory
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_ARGS ?=

.PHONY: demo test fuzz build configure configure-test bootstrap header audit mutants clean

bootstrap:
	@scripts/bootstrap.sh

configure: bootstrap
	@test -f $(BUILD)/CMakeCache.txt || cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

build: configure
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	@scripts/demo.sh $(BUILD)

configure-test: bootstrap
	@test -f $(TEST_BUILD)/CMakeCache.txt || cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Release -DNYXQ_CARGO_PROFILE=dev

test: configure-test
	cmake --build $(TEST_BUILD) -j $(JOBS)
	cd $(TEST_BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

# Mutation testing of the CPU modules with the CPU tests (.cargo/mutants.toml);
# not part of `make test`. MUTANTS_FILES picks the files, MUTANTS_ARGS passes
# options through, e.g. MUTANTS_FILES="-f src/train/adam.rs" MUTANTS_ARGS="--shard 0/8".
MUTANTS_FILES ?= -f src/format.rs -f 'src/quant/*.rs' -f 'src/matvec/*.rs' -f 'src/plan/*.rs' \
	-f 'src/train/*.rs' -f src/config.rs -f src/cpu_kernels.rs
MUTANTS_ARGS ?=
MUTANTS_OUT := target/mutants
# MUTANTS_MODULE=train (or config, matvec, plan, quant, cpu_kernels) runs one module with only the tests that
# reach it, as .cargo/mutants-$(MUTANTS_MODULE).toml lists them.
ifneq ($(MUTANTS_MODULE),)
MUTANTS_FILES = --config .cargo/mutants-$(MUTANTS_MODULE).toml
MUTANTS_OUT := target/mutants/$(MUTANTS_MODULE)
endif
mutants:
	@command -v cargo-mutants >/dev/null 2>&1 || cargo install --locked cargo-mutants@27.1.0
	@mkdir -p $(MUTANTS_OUT)
	cargo mutants --jobs 1 --output $(MUTANTS_OUT) $(MUTANTS_FILES) $(MUTANTS_ARGS)

# Dependency audit with cargo-deny (deny.toml); not part of `make test`. The
# advisories check fetches RustSec's database from GitHub: where that cannot be
# reached, AUDIT_CHECKS="licenses bans sources" checks the rest.
AUDIT_CHECKS ?= advisories licenses bans sources
audit:
	@command -v cargo-deny >/dev/null 2>&1 || cargo install --locked cargo-deny
	cargo deny check $(AUDIT_CHECKS)

fuzz: bootstrap
	@test -f $(FUZZ_BUILD)/CMakeCache.txt || cmake -S fuzz -B $(FUZZ_BUILD) -DCMAKE_CXX_COMPILER=clang++ -DNYXQ_FUZZ_INSTRUMENTED=ON
	cmake --build $(FUZZ_BUILD) -j $(JOBS)
	@for target in $(FUZZ_TARGETS); do \
	  fuzz/run.sh $(FUZZ_BUILD)/fuzz_$$target fuzz/corpus/$$target $(FUZZ_BUILD)/work/$$target $(FUZZ_SECONDS) || exit 1; \
	done

# Regenerates include/nyxq.h and cpp_tests/layout_generated.hpp from src/ffi
# (commit the result).
header:
	NYXQ_UPDATE_HEADER=1 cargo build
	NYXQ_UPDATE_HEADER=1 cargo test --features test-exports --test header_is_current

clean:
	rm -rf $(BUILD) $(TEST_BUILD) $(FUZZ_BUILD)
