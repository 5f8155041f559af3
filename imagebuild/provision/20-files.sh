#!/bin/bash
# Lays rootfs/ onto /, the agent's binaries into /usr/local/bin and cloud-init's snippets into cloud.cfg.d.
set -euo pipefail
p=$MCHA_PAYLOAD
# Directories keep their modes; files are root's.
cp -rT --no-preserve=ownership "$p/rootfs" /
chown -R root:root /etc/mailcow-ha /etc/systemd /etc/sysctl.d /usr/lib/systemd/system 2>/dev/null || true
for b in $MCHA_BINARIES; do
	install -m 0755 -o root -g root "$p/bin/$b" "/usr/local/bin/$b"
done
install -d -m 0755 /etc/cloud/cloud.cfg.d
for f in "$p"/cloud.cfg.d/*.cfg; do
	install -m 0644 -o root -g root "$f" /etc/cloud/cloud.cfg.d/
done
# The agent's directories: configuration and secrets are root's alone.
install -d -m 0700 /etc/mailcow-ha
install -d -m 0755 /var/lib/mailcow-ha /var/lib/mailcow-ha/images
install -d -m 2755 -g systemd-journal /var/log/journal 2>/dev/null || install -d -m 0755 /var/log/journal
install -d -m 0755 /usr/share/doc/mailcow-ha
cp -r "$p/doc/." /usr/share/doc/mailcow-ha/
echo "$MCHA_VERSION" >/usr/share/doc/mailcow-ha/VERSION
