#!/usr/bin/env bash
# `just bench`: installs nats-server (Debian) if missing, builds gregor and the NATS bench client
# in release mode into the same target dir, then runs benches/suite.py with the given flags.
# Tansu is optional: TANSU=/path/to/tansu (docs/benchmarks.md says how it was built).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
if ! command -v nats-server >/dev/null 2>&1 && [[ ! -x /usr/sbin/nats-server ]]; then
  if [[ $(id -u) -ne 0 ]]; then echo "bench: need root to apt-get install nats-server" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
fi
(cd "$root" && cargo build --release -p gregor-cli)
(cd "$root/benches/natsbench" && cargo build --release --locked)
exec python3 "$root/benches/suite.py" "$@"
