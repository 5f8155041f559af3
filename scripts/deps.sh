#!/usr/bin/env bash
# Installs the Debian packages that the tests and the demo need, and nothing else. Idempotent: it runs apt-get
# only when a package is missing. The list is scripts/packages.txt (one package a line, # for comments).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mapfile -t wanted < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/packages.txt")
missing=()
for p in "${wanted[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[[ $status == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
	echo "deps: all ${#wanted[@]} packages present"
	exit 0
fi
if [[ $(id -u) != 0 ]]; then
	echo "deps: missing ${missing[*]}; run 'make deps' as root (apt-get needs it)" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# No package's service starts on this machine (sshd, mariadb, nginx, keepalived): the tests start what they need, in
# their namespaces. invoke-rc.d and deb-systemd-invoke ask policy-rc.d; one is put there for the install if none is.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
# --no-install-recommends keeps the machine to what the tests use.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: installed ${#missing[@]} package(s)"
