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
# System packages for the WebGPU suites (packages/runtime-webgpu; docs/webgpu.md, ../shared/docs/toolchain.md):
# Debian's chromium ships SwiftShader, a CPU Vulkan driver (vk_swiftshader_icd.json) that Dawn (the `webgpu`
# npm package) runs on where there is no GPU, and the headless browser of the in-page test; libvulkan1 is the
# Vulkan loader Dawn opens. Installed when missing and running as root; otherwise those suites fail with a
# message saying what to install.
SWIFTSHADER_ICD=/usr/lib/chromium/vk_swiftshader_icd.json
ensure_webgpu_packages() {
  local missing=()
  { [ -x /usr/bin/chromium ] && [ -f "$SWIFTSHADER_ICD" ]; } || missing+=(chromium)
  { ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; } || missing+=(libvulkan1)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "apt-get install -y ${missing[*]} (the WebGPU tests' Vulkan driver, loader and headless browser)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    say "WARNING: ${missing[*]} not installed and not root: the WebGPU tests will fail (apt-get install -y ${missing[*]})"
  fi
}
ensure_webgpu_packages
# WebGPU in Node runs on SwiftShader unless the caller chose another Vulkan driver.
export VK_ICD_FILENAMES="${VK_ICD_FILENAMES:-$SWIFTSHADER_ICD}"

if [ ! -d ../shared/models ]; then
  say "WARNING: ../shared (real models and llama2.c reference outputs) is not next to this repository;"
  say "         the tests that need it will be skipped (and fail under CI=1)"
fi

say "pnpm install --frozen-lockfile"
pnpm install --frozen-lockfile
say "pnpm test (build every package, then vitest)"
pnpm test
# The browser demo's end-to-end test leaves its screenshots here for CI to keep (docs/demo.md).
say "screenshots: $(ls test-artifacts/*.png 2>/dev/null | tr '\n' ' ' || true)"
