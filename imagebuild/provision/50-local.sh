#!/bin/bash
# Only for the local (QEMU) image, which has no Hetzner base image under it: the root file system's fstab, a
# hostname until cloud-init sets one, and quicker boots under emulation. Nothing here on Hetzner.
set -euo pipefail
[[ $MCHA_TARGET == local ]] || exit 0
echo "LABEL=$MCHA_LOCAL_LABEL / ext4 rw,errors=remount-ro 0 1" >/etc/fstab
echo localhost >/etc/hostname
# No IPv6 router advertisements or link-local addresses on the emulated links (cloud-init 22.4 ignores
# accept-ra: false); at Hetzner IPv6 is configured statically and needs link-local, so this stays local.
install -d /etc/systemd/network/10-cloud-init-eth0.network.d /etc/systemd/network/10-cloud-init-eth1.network.d
for n in eth0 eth1; do
	printf '[Network]\nIPv6AcceptRA=no\nLinkLocalAddressing=no\n' >"/etc/systemd/network/10-cloud-init-$n.network.d/90-mailcow-ha.conf"
done
# Only an ed25519 host key (RSA key generation takes seconds under emulation).
printf 'ssh_genkeytypes: [ed25519]\n' >/etc/cloud/cloud.cfg.d/91-mailcow-ha-local.cfg
# No root password; the VM tests read the serial console and never log in.
passwd -l root >/dev/null
