# Shared setup for scripts/main.sh and scripts/test.sh (sourced, not run).
# Works on a fresh machine that has only Node.js 20 (>= 20.19) and npm: installs the pinned pnpm if it is
# missing, then the workspace's dependencies from the committed lockfile, then builds every package.

# pnpm 12 records the pinned pnpm ("packageManager") in pnpm-lock.yaml by resolving its platform packages
# (@pnpm/exe.*) from the registry; where the registry does not serve them it cannot record the pin
# ("The registry publishes no pnpm 12.21.0 ..."), and then every `pnpm install --frozen-lockfile` fails with
# ERR_PNPM_FROZEN_LOCKFILE_WITH_OUTDATED_LOCKFILE. We install the pinned pnpm ourselves (ensure_pnpm), so pnpm
# need not manage its own version: pmOnFail=ignore turns that off and frozen installs work.
# (The same can be set for every pnpm command with `pmOnFail: ignore` in pnpm-workspace.yaml.)
export pnpm_config_pm_on_fail="${pnpm_config_pm_on_fail:-ignore}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

require_node() {
  command -v node >/dev/null 2>&1 || die "Node.js is not installed; install Node.js 20.19 or newer (https://nodejs.org), then run this again"
  local v major minor
  v=$(node -p 'process.versions.node')
  major=${v%%.*}
  minor=${v#*.}; minor=${minor%%.*}
  if [ "$major" -lt 20 ] || { [ "$major" -eq 20 ] && [ "$minor" -lt 19 ]; }; then
    die "Node.js $v is too old; this project needs Node.js 20.19 or newer"
  fi
}

# The pnpm version pinned in package.json ("packageManager": "pnpm@X.Y.Z"); turbo needs the pin.
pinned_pnpm() {
  node -p "require('./package.json').packageManager.replace(/^pnpm@/, '').split('+')[0]"
}

ensure_pnpm() {
  local want have
  want=$(pinned_pnpm)
  if command -v pnpm >/dev/null 2>&1; then
    have=$(pnpm --version 2>/dev/null || echo none)
    # Same major version: same lockfile format; that is what matters for --frozen-lockfile.
    if [ "${have%%.*}" = "${want%%.*}" ]; then return 0; fi
    say "pnpm $have found, but this repository pins pnpm $want; installing pnpm $want"
  else
    say "pnpm not found; installing pnpm $want with npm"
  fi
  if ! npm install -g "pnpm@$want" >&2; then
    # No permission to write npm's global prefix (not root): install for this user instead.
    say "npm install -g failed; installing pnpm $want under \$HOME/.local"
    npm install -g --prefix "$HOME/.local" "pnpm@$want" >&2 || die "could not install pnpm $want (npm install -g pnpm@$want)"
    export PATH="$HOME/.local/bin:$PATH"
  fi
  hash -r
  command -v pnpm >/dev/null 2>&1 || die "pnpm $want was installed but is not on PATH (npm prefix: $(npm prefix -g))"
}

install_and_build() {
  say "pnpm install --frozen-lockfile"
  pnpm install --frozen-lockfile
  say "pnpm build"
  pnpm build
}
