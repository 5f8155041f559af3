#!/bin/bash
# Leaves a clean image for a snapshot: no cloud-init state, logs, seed or machine id (every node gets its own at
# first boot), no SSH host keys (cloud-init makes new ones), no apt caches.
set -euo pipefail
cloud-init clean --logs --machine-id --seed
rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub
# systemd regenerates an empty machine id at boot; an absent one would make first-boot units misbehave.
truncate -s 0 /etc/machine-id
rm -f /var/lib/dbus/machine-id
ln -sf /etc/machine-id /var/lib/dbus/machine-id
apt-get clean
rm -rf /var/lib/apt/lists/* /var/log/journal/* /var/tmp/* /root/.bash_history
find /var/log -type f -name '*.log' -delete
