#!/usr/bin/env bash
# Runs every Gregor test: installs what the tests need (idempotent), checks formatting, lints and
# docs, then runs the whole suite in one nextest invocation.
set -euo pipefail
cd "$(dirname "$0")/.."

./tests/setup.sh

# Keep build artifacts outside the clone so CI reruns on the same machine are incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gregor-target}"
if [[ "${CI:-}" == "true" ]]; then export CARGO_INCREMENTAL=0; fi

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
cargo nextest run --workspace --locked --no-fail-fast --profile ci

# The three-node docker compose cluster under leader kills (prints SKIPPED without a Docker engine).
./tests/compose.sh
