// Package vm boots the appliance image (imagebuild's local build) in QEMU and tests it as users run it: cloud-init
// hands the TOML user-data to the agent over a NoCloud seed, systemd runs the units, the firewall is loaded, the
// Volume arrives by SCSI hot-plug as at Hetzner. The harness here (VMs, their network in a namespace of its own,
// the serial console, QMP) is used by the scenarios in vm_test.go.
package vm
