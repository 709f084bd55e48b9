# llmap — plain make, no generator.
#
#   make            build ./llmap and build/libllmap.a
#   make deps       install the Debian packages the build and tests need
#   make run        install what is missing, build, chat with a default model
#   make test       install what is missing, build, run the suite (plain, ASan+UBSan, bounded fuzz)
#   make asan       the suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make fuzz       libFuzzer targets (clang), FUZZ_SECONDS shared by all targets
#   make bench      benchmarks (kernels, tokenizers, generation)
#
# BUILD=dir keeps several build trees apart (e.g. one per sanitizer or per developer).

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
SANFLAGS ?=
# Baseline ISA everywhere: only files named *_avx2.c get -mavx2 -mfma -mf16c (see below), so the
# binary runs on any x86-64 and picks its kernels at run time.
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g $(OPT) -fno-strict-aliasing \
               -Iinclude -Isrc
PKGS    := libmicrohttpd libcjson libcurl libpcre2-8 libutf8proc libedit libcrypto
CFLAGS  += $(CFLAGS_BASE) $(SANFLAGS) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
LDFLAGS += $(SANFLAGS)

# MODULES=util gguf mem builds the library from those modules only (handy while another module
# is mid-edit in a shared tree); default: all of src/.
MODULES  ?= $(notdir $(wildcard src/*))
LIB_SRC  := $(sort $(foreach m,$(MODULES),$(wildcard src/$(m)/*.c)))
LIB_SRC  := $(filter-out src/cli/main.c,$(LIB_SRC))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(BUILD)/src/cli/main.o
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))

.PHONY: all deps run test check asan fuzz bench clean
# keep test objects between builds (they are intermediate files to make)
.SECONDARY:

all: llmap

# Files whose names end in _avx2.c hold AVX2+FMA+F16C code; only they get those flags.
$(BUILD)/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -mavx2 -mfma -mf16c -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libllmap.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/llmap: $(CLI_OBJ) $(BUILD)/libllmap.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

llmap: $(BUILD)/llmap
	@if [ "$(BUILD)" = build ]; then cp -f $(BUILD)/llmap ./llmap; fi

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/libllmap.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

tests: $(TEST_BIN) $(BUILD)/llmap

deps:
	@tools/deps.sh

run: deps
	@$(MAKE) --no-print-directory all
	@tools/run-default.sh

# The whole suite: plain build, then the same suite under ASan+UBSan, then a bounded fuzz run.
test: deps
	@$(MAKE) --no-print-directory check
	@$(MAKE) --no-print-directory asan
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$${FUZZ_SECONDS:-40}

check: all tests
	@tools/run-tests.sh $(BUILD)

asan:
	@$(MAKE) --no-print-directory BUILD=build-asan CC=clang OPT=-O1 \
	    SANFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	    build-asan/llmap tests-asan
	@LLMAP_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 tools/run-tests.sh build-asan

tests-asan: $(TEST_BIN)

FUZZ_SECONDS ?= 60
fuzz:
	@tools/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_SRC)

bench: all
	@./llmap bench kernels
	@./llmap bench tokenize
	@bench/models.sh
	@bench/coldload.sh
	@bench/memory.sh
	@echo "== optional: llama.cpp side by side (needs node >= 20 and npm; skips otherwise; failures do not fail make bench)"
	-@bench/vs-llamacpp.sh

clean:
	rm -rf build build-asan build-fuzz llmap

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_BIN:%=%.d)
