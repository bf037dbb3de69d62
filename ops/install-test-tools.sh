#!/usr/bin/env bash
# Install what the login-test harness (tests/support, tests/harness) needs, only what is missing:
# Debian's chromium (driven by Playwright, never `playwright install`), and the npm packages of
# the test OpenID Connect provider (npm ci from its package-lock.json). Node.js 20+ and npm must
# already be on the machine. The Python package playwright comes with the .venv (pyproject).
# Safe to re-run. Usage: ops/install-test-tools.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
provider_dir="$root/tests/support/oidc_provider"

fail() { echo "install-test-tools: $*" >&2; exit 1; }

# 1. Chromium from Debian (/usr/bin/chromium); keepalived only for `keepalived --config-test`
#    of ops/keepalived (tests/director/test_keepalived_template.py), never started; Java 17 for
#    the Spark trainer's local-mode test; pg_repack only for bench/bench_partition_move.py's
#    comparison (the product does not use it).
"$root/ops/install-system.sh" chromium redis-server wrk keepalived default-jre-headless postgresql-15-repack
[ -x /usr/bin/chromium ] || fail "/usr/bin/chromium is missing after installing Debian's chromium"
command -v java >/dev/null || fail "java is missing after installing Debian's default-jre-headless"

# 2. Node.js 20+ and npm: expected on the machine, not installed here.
command -v node >/dev/null || fail "node is not installed: install Node.js 20 or later (with npm)"
command -v npm >/dev/null || fail "npm is not installed: install npm for $(node --version)"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || fail "Node.js 20 or later is needed, found $(node --version)"

# 3. The provider's npm packages, exactly as locked; redone only when the lock file changes.
stamp="$provider_dir/node_modules/.movierec-lock.sha256"
want="$(sha256sum "$provider_dir/package-lock.json" | cut -d' ' -f1)"
if [ ! -d "$provider_dir/node_modules/oidc-provider" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing the test OIDC provider's npm packages (npm ci)"
  (cd "$provider_dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi
