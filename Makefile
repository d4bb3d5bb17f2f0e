# cairn — see README.md. `make demo` runs the main job; `make test` the tests.
GO      ?= go
BIN     ?= bin/cairn
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: build test demo bench lint fuzz clean

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/cairn

test:
	bash scripts/test.sh

demo: build
	bash scripts/demo.sh

bench: build
	bash bench/run.sh

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi

# make fuzz FUZZTIME=10m runs every fuzz target for FUZZTIME each.
FUZZTIME ?= 30s
fuzz:
	bash scripts/fuzz.sh $(FUZZTIME)

clean:
	rm -rf bin
