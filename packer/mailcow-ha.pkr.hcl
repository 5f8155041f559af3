# The mailcow-ha appliance snapshot on Hetzner Cloud. Valid for Debian's packer 1.6.6, whose hcloud builder is
# built in (`make image-hetzner`; newer packer also needs packer/newer/plugins.pkr.hcl, see docs/image.md).
# The provisioning is imagebuild/provision/*.sh: the same steps the local (QEMU) image runs, working from the
# payload that `mailcow-ha image payload --target hetzner` assembles from imagebuild/manifest.toml.

variable "hcloud_token" {
  type    = string
  default = env("HCLOUD_TOKEN")
}

variable "payload" {
  type        = string
  default     = "../build/packer/payload"
  description = "Folder made by mailcow-ha image payload --target hetzner."
}

variable "version" {
  type        = string
  default     = "dev"
  description = "The agent's version, recorded in the snapshot's labels."
}

variable "build" {
  type        = string
  default     = "local"
  description = "The build's identifier (the input hash or a CI run)."
}

variable "channel" {
  type    = string
  default = "testing"
}

variable "location" {
  type    = string
  default = "fsn1"
}

variable "server_type" {
  type    = string
  default = "cx32"
}

locals {
  snapshot_name = "mailcow-ha ${var.version} (${var.build}, ${var.channel})"
}

source "hcloud" "mailcow-ha" {
  token         = var.hcloud_token
  image         = "debian-13"
  location      = var.location
  server_type   = var.server_type
  server_name   = "mailcow-ha-image-build"
  ssh_username  = "root"
  snapshot_name = local.snapshot_name
  snapshot_labels = {
    app     = "mailcow-ha"
    version = var.version
    build   = var.build
    channel = var.channel
  }
}

build {
  sources = ["source.hcloud.mailcow-ha"]

  provisioner "shell" {
    inline = ["rm -rf /tmp/mailcow-ha-payload", "mkdir -p /tmp/mailcow-ha-payload"]
  }

  provisioner "file" {
    source      = "${var.payload}/"
    destination = "/tmp/mailcow-ha-payload"
  }

  provisioner "shell" {
    environment_vars = ["MCHA_TARGET=hetzner", "DEBIAN_FRONTEND=noninteractive"]
    inline = [
      "bash /tmp/mailcow-ha-payload/provision/run.sh",
      "rm -rf /tmp/mailcow-ha-payload",
    ]
  }

  post-processor "manifest" {
    output     = "packer-manifest.json"
    strip_path = true
    custom_data = {
      snapshot_name = local.snapshot_name
      version       = var.version
      build         = var.build
      channel       = var.channel
    }
  }
}
