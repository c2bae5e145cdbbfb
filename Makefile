# The README's two commands are `make quickstart` and `make test`.
GO       ?= go
BIN      := bin/gatehouse
DATA_DIR ?= ./gatehouse-data
TEST_FLAGS ?= -race -count=1 -timeout 25m

.PHONY: all build quickstart test deps test-deps vet clean bench

all: build

build:
	$(GO) build -o $(BIN) ./cmd/gatehouse

deps:
	./scripts/install-deps.sh

test-deps:
	./scripts/install-deps.sh mariadb softhsm chromium

quickstart: deps build
	$(BIN) quickstart --data-dir $(DATA_DIR)

vet:
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi

test: test-deps vet
	GO=$(GO) ./scripts/test.sh $(TEST_FLAGS)

clean:
	rm -rf bin

# make bench [QUICK=1] [PIN=1] [PROFILE=1] [RELAY=1] [ONLY=select,rows,...] [BENCH_BINARY=path]: the performance harness (docs/performance.md). Results in
# bench/out/. It builds the gatehouse binary it measures; the open-files limit is raised for 2,000
# idle connections.
bench:
	./scripts/install-deps.sh pgbouncer
	ulimit -n $$(ulimit -Hn) && QUICK=$(QUICK) PIN=$(PIN) PROFILE=$(PROFILE) RELAY=$(RELAY) ONLY=$(ONLY) BENCH_BINARY=$(BENCH_BINARY) $(GO) run ./bench/cmd/gatehouse-bench
