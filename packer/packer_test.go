package packer

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// payload assembles a real Hetzner payload (binaries built from this module) for the file provisioner's source.
func payload(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	for _, c := range []string{"mailcow-ha", "mailcow-ha-check", "mailcow-signup"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, c), "github.com/mailcow-ha/mailcow-ha/cmd/"+c)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", c, err, out)
		}
	}
	dir := filepath.Join(t.TempDir(), "payload")
	out, err := exec.Command(filepath.Join(bin, "mailcow-ha"), "image", "payload", "--target", "hetzner", "--top", "..", "--bin", bin, "--out", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("mailcow-ha image payload: %v\n%s", err, out)
	}
	for _, f := range []string{"manifest.env", "provision/run.sh", "rootfs/etc/nftables.conf", "cloud.cfg.d/90-mailcow-ha.cfg", "bin/mailcow-ha"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("payload: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "images")); err == nil {
		t.Errorf("a Hetzner payload carries the stub images")
	}
	return dir
}

// Debian's packer 1.6.6 accepts the template offline (its hcloud builder is built in) with a dummy token, and
// refuses it without one; packer fmt has nothing to change.
func TestPackerValidate(t *testing.T) {
	pk, err := exec.LookPath("packer")
	if err != nil {
		t.Skip("packer is not installed (Debian package packer)")
	}
	pl := payload(t)
	run := func(env []string, args ...string) (string, error) {
		cmd := exec.Command(pk, args...)
		cmd.Env = append(os.Environ(), append(env, "CHECKPOINT_DISABLE=1", "PACKER_CACHE_DIR="+t.TempDir())...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run([]string{"HCLOUD_TOKEN=dummy"}, "validate", "-var", "payload="+pl, "."); err != nil {
		t.Fatalf("packer validate: %v\n%s", err, out)
	}
	if out, err := run([]string{"HCLOUD_TOKEN="}, "validate", "-var", "payload="+pl, "."); err == nil || !strings.Contains(out, "token") {
		t.Errorf("packer validate without a token: want an error about the token, got %v\n%s", err, out)
	}
	if out, err := run(nil, "fmt", "-check", "-diff", "."); err != nil {
		t.Errorf("packer fmt -check: %v\n%s", err, out)
	}
	if out, err := run(nil, "fmt", "-check", "newer"); err != nil {
		t.Errorf("packer fmt -check newer: %v\n%s", err, out)
	}
	// The template names what the issue asks for.
	b, err := os.ReadFile("mailcow-ha.pkr.hcl")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`image         = "debian-13"`, `app     = "mailcow-ha"`, `post-processor "manifest"`, "provision/run.sh", "MCHA_TARGET=hetzner"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("template lacks %q", want)
		}
	}
	if strings.Contains(string(b), "required_plugins") {
		t.Errorf("required_plugins in the template: packer 1.6.6 does not know it (packer/newer/)")
	}
}
