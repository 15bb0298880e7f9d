#!/usr/bin/env bash
# Installs Debian packages with apt-get, as root or through sudo, for the scripts that set up a
# fresh machine. Usage: apt-install.sh WHO PACKAGE...; WHO names the caller in its messages.
# Where it cannot install (no apt-get, no rights), it says what to install and exits 1.
set -euo pipefail
who=$1
shift

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "$who: $* missing, not root and no sudo to install with: apt-get install $*" >&2
    exit 1
  fi
  # A person at a terminal can answer sudo's password prompt; elsewhere (CI) only passwordless
  # sudo will do.
  if [ -t 0 ]; then
    sudo=(sudo)
  elif sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    echo "$who: $* missing, not root and no passwordless sudo: apt-get install $*" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null; then
  echo "$who: $* missing and no apt-get here (not Debian or Ubuntu): install $* by hand" >&2
  exit 1
fi
echo "$who: installing $* with apt-get"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq || true
if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
  echo "$who: apt-get install $* failed" >&2
  exit 1
fi
