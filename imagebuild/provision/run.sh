#!/bin/bash
# Runs the provisioning steps NN-*.sh in order, on both paths: packer's shell provisioner on Hetzner's debian-12
# (MCHA_TARGET=hetzner, on the running server) and mmdebstrap's customize hook (MCHA_TARGET=local, in a chroot).
# Every step is idempotent: running this twice gives the same system. manifest.env (rendered from
# imagebuild/manifest.toml by `mailcow-ha image env`) sits beside this folder in the payload.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export MCHA_PAYLOAD=${MCHA_PAYLOAD:-$(dirname "$here")}
export MCHA_TARGET=${MCHA_TARGET:?MCHA_TARGET must be hetzner or local}
case $MCHA_TARGET in hetzner | local) ;; *)
	echo "provision: MCHA_TARGET=$MCHA_TARGET: must be hetzner or local" >&2
	exit 2
	;;
esac
# shellcheck source=/dev/null
set -a
. "$MCHA_PAYLOAD/manifest.env"
set +a
export DEBIAN_FRONTEND=noninteractive
for step in "$here"/[0-9][0-9]-*.sh; do
	name=$(basename "$step")
	t0=$(date +%s%N)
	echo "provision: $name ($MCHA_TARGET)"
	bash "$step"
	echo "provision: $name done in $((($(date +%s%N) - t0) / 1000000)) ms"
done
