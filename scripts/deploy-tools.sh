#!/usr/bin/env bash
# Makes sure the tools that check deploy/ are installed: promtool (Debian/Ubuntu package
# prometheus) and docker-compose. Installs what is missing with apt-get; fails loudly when a tool
# is missing and cannot be installed.
set -euo pipefail

missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v docker-compose >/dev/null || missing+=(docker-compose)
[ ${#missing[@]} -eq 0 ] && exit 0

"$(dirname "$0")/apt-install.sh" deploy-tools "${missing[@]}"
sudo=()
[ "$(id -u)" -ne 0 ] && sudo=(sudo -n)
# Only promtool is wanted from the prometheus package: where systemd started the server, stop it.
if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null &&
  systemctl is-active --quiet prometheus 2>/dev/null; then
  "${sudo[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
for tool in promtool docker-compose; do
  command -v "$tool" >/dev/null || { echo "deploy-tools: $tool still missing after apt-get install" >&2; exit 1; }
done
