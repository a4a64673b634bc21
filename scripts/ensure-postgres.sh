#!/usr/bin/env bash
# Installs the PostgreSQL server binaries (Debian's postgresql package) when they are missing, so
# the tests can start their own throwaway server. Does nothing when initdb and pg_ctl are there.
set -euo pipefail

if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then exit 0; fi
if compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null; then exit 0; fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo="sudo"
else
  echo "PostgreSQL server binaries are missing and this user cannot install them." >&2
  echo "Install Debian's postgresql package (apt-get install postgresql), then run make test again." >&2
  exit 1
fi

echo "Installing PostgreSQL server binaries (Debian package postgresql)..."
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
