# cairn — see README.md. `make demo` runs the main job; `make test` the tests.
GO      ?= go
BIN     ?= bin/cairn
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: build agents test demo bench lint fuzz clean

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/cairn
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(dir $(BIN))cairn-agent ./cmd/cairn-agent

# make agents cross-compiles the device agent, stripped and static, into
# bin/cairn-agent-linux-{amd64,arm64,armv7}.
AGENT_LDFLAGS = -s -w -X main.version=$(VERSION)
agents:
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags "$(AGENT_LDFLAGS)" -o bin/cairn-agent-linux-amd64 ./cmd/cairn-agent
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags "$(AGENT_LDFLAGS)" -o bin/cairn-agent-linux-arm64 ./cmd/cairn-agent
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags "$(AGENT_LDFLAGS)" -o bin/cairn-agent-linux-armv7 ./cmd/cairn-agent
	@ls -l bin/cairn-agent-linux-*

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
