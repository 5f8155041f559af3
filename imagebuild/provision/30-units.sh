#!/bin/bash
# Enables, disables and masks units as the manifest says. keepalived and mariadb stay disabled: the agent starts
# them, in its order and with its configuration. systemctl works offline here (chroot) and on a running server.
set -euo pipefail
running=false
[[ -d /run/systemd/system && $MCHA_TARGET == hetzner ]] && running=true
$running && systemctl daemon-reload
for u in $MCHA_ENABLE; do
	if [[ -e /lib/systemd/system/$u || -e /usr/lib/systemd/system/$u || -e /etc/systemd/system/$u ]]; then
		systemctl enable "$u" 2>&1 | grep -v '^Created symlink' || true
	else
		echo "units: $u does not exist" >&2
		exit 1
	fi
done
for u in $MCHA_DISABLE; do
	systemctl disable "$u" 2>&1 | grep -v '^Removed' || true
	$running && systemctl stop "$u" || true
done
for u in $MCHA_MASK; do
	systemctl mask "$u" 2>&1 | grep -v '^Created symlink' || true
done
# The agent's unit must be the one enabled, with keepalived and mariadb disabled: check, do not trust.
systemctl is-enabled mailcow-ha.service >/dev/null
for u in $MCHA_DISABLE; do
	state=$(systemctl is-enabled "$u" 2>/dev/null || true)
	if [[ $state == enabled ]]; then
		echo "units: $u is still enabled" >&2
		exit 1
	fi
done
