#!/usr/bin/env bash
# Install what the test suite needs and run it: `bash scripts/test.sh` (CI runs exactly this via .ci/run).
# Needs only Node.js >= 20.19 with npm; installs the pinned pnpm when it is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/setup.sh

case "${1:-}" in
  '') ;;
  -h|--help)
    echo "Usage: bash scripts/test.sh    (installs pnpm if missing, pnpm install --frozen-lockfile, pnpm test)"
    exit 0 ;;
  *) printf 'error: scripts/test.sh takes no arguments (got %s); see --help\n' "$1" >&2; exit 2 ;;
esac

require_node
ensure_pnpm
# System packages: none yet. The WebGPU test suites (runtime-webgpu, coming) will need Debian's chromium for
# its SwiftShader Vulkan driver and headless browser (docs: ../shared/docs/toolchain.md), installed here with
#   apt-get update && apt-get install -y chromium
# when they land.

if [ ! -d ../shared/models ]; then
  say "WARNING: ../shared (real models and llama2.c reference outputs) is not next to this repository;"
  say "         the tests that need it will be skipped (and fail under CI=1)"
fi

say "pnpm install --frozen-lockfile"
pnpm install --frozen-lockfile
say "pnpm test (build every package, then vitest)"
pnpm test
