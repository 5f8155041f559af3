# Only for packer 1.7 and newer, whose hcloud builder is a plugin: `make image-hetzner` copies this file next to
# the template when the installed packer is newer than 1.6. Debian's packer 1.6.6 must not load it (it does not
# know required_plugins), so it lives in a folder of its own.
packer {
  required_plugins {
    hcloud = {
      source  = "github.com/hetznercloud/hcloud"
      version = ">= 1.6.0"
    }
  }
}
