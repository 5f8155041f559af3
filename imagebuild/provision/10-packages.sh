#!/bin/bash
# Installs the manifest's packages that are missing (locally mmdebstrap has installed them already, so this
# finds nothing to do). On Hetzner it also brings the base image up to date first.
set -euo pipefail
pkgs=($MCHA_PACKAGES)
if [[ $MCHA_TARGET == local ]]; then
	pkgs+=($MCHA_LOCAL_PACKAGES)
fi
missing=()
for p in "${pkgs[@]}"; do
	[[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) == "install ok installed" ]] || missing+=("$p")
done
if [[ $MCHA_TARGET == hetzner ]]; then
	apt-get update -qq
	apt-get -y -qq -o Dpkg::Options::=--force-confold dist-upgrade
fi
if ((${#missing[@]} > 0)); then
	echo "packages: installing ${missing[*]}"
	[[ $MCHA_TARGET == hetzner ]] || apt-get update -qq
	apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold "${missing[@]}"
else
	echo "packages: all ${#pkgs[@]} present"
fi
