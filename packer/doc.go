// Package packer holds the Hetzner snapshot template (mailcow-ha.pkr.hcl, valid for Debian's packer 1.6.6); it has
// no code, and its test runs the real packer's validate and fmt on it.
package packer
