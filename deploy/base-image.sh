#!/usr/bin/env bash
# Makes sure a Debian base image for deploy/Dockerfile exists, without a container registry.
#
# Prints the `--build-arg` the Dockerfile needs on stdout (empty when the stock image is used), so
# callers do: `docker build $(deploy/base-image.sh) ...`.
#
# - If `debian:<release>-slim` is already present (pulled from a registry, or loaded by hand), it
#   is used as is: the Dockerfile's default `FROM` works unchanged and nothing is printed.
# - Otherwise, if the local image `gregor-debian-base:<release>` is missing, it is built from
#   Debian's packages: `debootstrap --variant=minbase` into a temporary directory (apt lists,
#   docs, man pages and locales removed), then `tar | docker import`. `<release>` is the host's
#   Debian release (VERSION_CODENAME of /etc/os-release), so the apt mirror the host already uses
#   serves it. It is never tagged `debian:<release>-slim`: a locally made image must not pass for
#   the official one.
# - Then `--build-arg BASE=gregor-debian-base:<release>` is printed.
#
# Idempotent: a second run finds the image and does nothing. Needs root for debootstrap (installs
# it with apt-get when missing). Environment: GREGOR_DEBIAN_RELEASE (default: the host's),
# GREGOR_DEBIAN_MIRROR (default: the first deb.debian.org-style mirror in the host's apt sources,
# else http://deb.debian.org/debian).
set -euo pipefail

release="${GREGOR_DEBIAN_RELEASE:-}"
if [[ -z "$release" && -r /etc/os-release ]]; then
  release=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
fi
release="${release:-bookworm}"
stock="debian:${release}-slim"
local_image="gregor-debian-base:${release}"

log() { echo "base-image: $*" >&2; }

if docker image inspect "$stock" >/dev/null 2>&1; then
  log "using $stock"
  exit 0
fi
if docker image inspect "$local_image" >/dev/null 2>&1; then
  log "using $local_image (already built)"
  echo "--build-arg BASE=$local_image"
  exit 0
fi

mirror="${GREGOR_DEBIAN_MIRROR:-}"
if [[ -z "$mirror" ]]; then
  # The mirror apt already uses: deb822 sources first, then the one-line format.
  mirror=$( (grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}';
             grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}') |
           grep -v security | head -n1 || true)
fi
mirror="${mirror:-http://deb.debian.org/debian}"

if ! command -v debootstrap >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then log "need root to install debootstrap"; exit 1; fi
  log "installing debootstrap"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
fi
if [[ $(id -u) -ne 0 ]]; then log "need root to run debootstrap"; exit 1; fi

rootfs=$(mktemp -d /tmp/gregor-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
log "debootstrap --variant=minbase $release from $mirror (a few minutes)"
start=$(date +%s)
debootstrap --variant=minbase "$release" "$rootfs" "$mirror" >&2
# Smaller image: nothing here is needed at run time.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
  "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
  "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/tmp/*
tar -C "$rootfs" --numeric-owner -c . |
  docker import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$local_image" >&2
log "built $local_image in $(( $(date +%s) - start )) s ($(docker image inspect -f '{{.Size}}' "$local_image") bytes)"
echo "--build-arg BASE=$local_image"
