#!/usr/bin/env bash
# Builds the `gregor:dev` image: the release binary from this checkout (no Rust toolchain image
# is needed), on a Debian base image that deploy/base-image.sh provides without a registry.
#
#   deploy/build-image.sh [TAG]        # default TAG: gregor:dev
#
# CARGO_TARGET_DIR is honoured. GREGOR_IMAGE_PROFILE=debug packs the debug build instead of the
# release one (the test command does: the debug build already exists there, and a cold release
# build costs ~20 min on a 2-core machine). Prints the build timings on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-gregor:dev}"
target="${CARGO_TARGET_DIR:-$PWD/target}"

t0=$(date +%s)
profile="${GREGOR_IMAGE_PROFILE:-release}"
case "$profile" in
  release) cargo build --release --locked -p gregor-cli >&2 ;;
  debug) cargo build --locked -p gregor-cli >&2 ;;
  *) echo "build-image: GREGOR_IMAGE_PROFILE must be release or debug, not $profile" >&2; exit 2 ;;
esac
t1=$(date +%s)
base_args=$(deploy/base-image.sh)
t2=$(date +%s)

# A context with only the Dockerfile and the binary: nothing of the source tree is sent.
context=$(mktemp -d /tmp/gregor-image.XXXXXX)
trap 'rm -rf "$context"' EXIT
cp deploy/Dockerfile "$context/Dockerfile"
cp "$target/$profile/gregor" "$context/gregor"
strip "$context/gregor" 2>/dev/null || true
# shellcheck disable=SC2086 # base_args is zero or two words by construction
docker build -q -t "$tag" $base_args "$context" >&2
t3=$(date +%s)
echo "build-image: $tag built (cargo $((t1 - t0)) s, base image $((t2 - t1)) s, docker build $((t3 - t2)) s; $(docker image inspect -f '{{.Size}}' "$tag") bytes)" >&2
