#!/usr/bin/env bash
# make demo: a real 3-node cluster on this machine, some mail, the master's power cut, the failover timeline, and
# proof that every acknowledged mail is readable on the new master. Everything it starts, it removes.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
lab() { bin/mailcow-ha lab "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

bin/mailcow-ha lab down >/dev/null 2>&1 || true
trap 'step "lab down"; lab down' EXIT
began=$(date +%s)
step "lab up: cluster create against the simulated Hetzner API (3 servers, their Volumes, the Floating IP, one user-data), then on each node keepalived, MariaDB Galera, a dockerd with the mailcow stack (Debian's postfix and dovecot, the other services stubbed), and the agent"
lab up
step "send 10 mails to the Floating IP from the client namespace"
lab send-mail 10
step "power off the MASTER and follow the failover"
lab failover
step "status after the failover"
lab status
step "5 more mails through the new MASTER"
lab send-mail 5
step "every acknowledged mail must be readable over IMAP on the new MASTER"
lab check-mail
step "demo done in $(($(date +%s) - began)) s"
