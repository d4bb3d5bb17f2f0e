#!/usr/bin/env bash
# make demo: the main job end to end on embedded defaults. Until the full demo
# lands it validates the example GitOps repository.
set -euo pipefail
cd "$(dirname "$0")/.."
bin/cairn validate examples/gitops
