# The README's two commands are `make quickstart` and `make test`.
GO       ?= go
BIN      := bin/gatehouse
DATA_DIR ?= ./gatehouse-data
TEST_FLAGS ?= -timeout 25m

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
	$(GO) test $(TEST_FLAGS) ./...

clean:
	rm -rf bin
