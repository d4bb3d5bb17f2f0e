#!/usr/bin/env bash
# make test: install and start the real servers the tests use (each
# scripts/services/*.sh), then vet, check formatting and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

start_services

step "go vet"
go vet ./...

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null; git ls-files --others --exclude-standard '*.go' 2>/dev/null) 2>/dev/null || true)
if [ -n "$unformatted" ]; then
  echo "not gofmt-formatted:"; echo "$unformatted"; exit 1
fi

step "go test"
go test -count=1 -timeout 25m ${GOTESTFLAGS:-} ./...
