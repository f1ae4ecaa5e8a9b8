#!/usr/bin/env bash
# Smoke-builds and runs the container image where no registry is reachable:
# a local Debian base (debootstrap) with this machine's Go stands in for
# BUILD_IMAGE, and scratch for RUNTIME_IMAGE. Then the image is run as it
# would be deployed (uid 65532, read-only root filesystem, /data volume)
# and must answer /healthz and /readyz and stop cleanly on SIGTERM.
# Run as root: bash .ci/smoke-image.sh. Not part of .ci/run: it downloads a
# Debian base system (~200 MB) and takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v buildah >/dev/null && command -v podman >/dev/null && command -v debootstrap >/dev/null ||
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y buildah podman runc debootstrap; }
work=$(mktemp -d /tmp/transferd-image.XXXXXX)
trap 'podman rm -f transferd-smoke >/dev/null 2>&1 || true; podman volume rm -f transferd-smoke >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
debootstrap --variant=minbase bookworm "$work/rootfs" "${mirror:-http://deb.debian.org/debian}" >"$work/debootstrap.log"
cp -a "$(go env GOROOT)" "$work/rootfs/usr/local/go"
mkdir -p "$work/rootfs/etc/ssl" && cp -aL /etc/ssl/certs "$work/rootfs/etc/ssl/"
c=$(buildah from scratch)
cp -a "$work/rootfs/." "$(buildah mount "$c")/"
buildah umount "$c" >/dev/null
buildah config --env PATH=/usr/local/go/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
buildah commit -q "$c" localhost/transferd-build-base:smoke >/dev/null
buildah rm "$c" >/dev/null

buildah bud --isolation chroot --network host \
  --build-arg BUILD_IMAGE=localhost/transferd-build-base:smoke --build-arg RUNTIME_IMAGE=scratch \
  -t localhost/transferd:smoke .

podman run -d --name transferd-smoke --runtime runc --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 \
  --read-only -v transferd-smoke:/data -p 127.0.0.1:18090:8080 localhost/transferd:smoke >/dev/null
for _ in $(seq 1 50); do curl -fsS 127.0.0.1:18090/readyz >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS 127.0.0.1:18090/healthz && echo && curl -fsS 127.0.0.1:18090/readyz && echo
[ "$(podman inspect transferd-smoke --format '{{.Config.User}}')" = "65532:65532" ]
podman stop -t 20 transferd-smoke >/dev/null
[ "$(podman inspect transferd-smoke --format '{{.State.ExitCode}}')" = 0 ]
echo "image smoke test: built, ran as 65532 on a read-only root filesystem, healthy, stopped cleanly"
