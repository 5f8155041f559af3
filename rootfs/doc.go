// Package rootfs holds the files laid onto the appliance image (systemd units, drop-ins, base configuration);
// it has no code, and its tests check those files with the tools that read them.
package rootfs
