#!/usr/bin/env bash
# Installs the clients of other ecosystems that the e2e tests drive against the REST facade:
# Stoplight Prism (tools/prism) and the TypeScript example's toolchain (examples/typescript),
# each from npm at the versions its package-lock.json pins, and Chromium (apt-get, sudo when not
# root). Node.js 20 or later must be installed; it says so when it is not.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "web-tools: Node.js 20 or later with npm is needed (https://nodejs.org, or apt-get install nodejs npm where it is 20+)" >&2
  exit 1
fi
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "web-tools: Node.js $(node --version) is too old: install Node.js 20 or later" >&2
  exit 1
fi

# npm ci wipes node_modules: only when the lock file changed since the last install.
for dir in tools/prism examples/typescript; do
  if [ ! "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
    echo "web-tools: npm ci in $dir"
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null
  fi
done

if ! command -v chromium >/dev/null; then
  scripts/apt-install.sh web-tools chromium
  command -v chromium >/dev/null || { echo "web-tools: chromium still missing after apt-get install" >&2; exit 1; }
fi
