# The two commands of the quick start, and a few helpers.
#   make demo   builds everything and runs the demo
#   make test   runs every test (cargo tests and ctest)
BUILD ?= build
MAKEFLAGS += --no-print-directory
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_ARGS ?=

.PHONY: demo test build configure bootstrap header clean

bootstrap:
	@scripts/bootstrap.sh

configure: bootstrap
	@test -f $(BUILD)/CMakeCache.txt || cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

build: configure
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	@scripts/demo.sh $(BUILD)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

# Regenerates include/nyxq.h from src/ffi (commit the result).
header:
	NYXQ_UPDATE_HEADER=1 cargo build

clean:
	rm -rf $(BUILD)
