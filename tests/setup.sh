#!/usr/bin/env bash
# Installs the external programs the test suite talks to. Safe to run repeatedly: each step is
# skipped when its tool is already present.
set -euo pipefail

need_apt=()
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
# deploy/base-image.sh builds the image's Debian base without a registry (tests/compose.sh).
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
if ((${#need_apt[@]})); then
  if [[ $(id -u) -ne 0 ]]; then echo "setup: need root to apt-get install ${need_apt[*]}" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! python3 -c 'import confluent_kafka, kafka, snappy, lz4.frame, zstandard' >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check -r "$(dirname "$0")/requirements.txt"
fi
