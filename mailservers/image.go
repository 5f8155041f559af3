// Package mailservers builds the container image with Debian's own postfix and dovecot that stands in for mailcow's
// postfix-mailcow and dovecot-mailcow where a test needs real mail servers: a queue that holds acknowledged mail
// before delivery, delivery over LMTP, Maildirs and index files on the Volume, and IMAP as real clients speak it.
// No registry is needed: mmdebstrap makes a minimal Debian root file system from Debian's mirror, and the Engine
// imports it (docker import). The root file system is cached under build/ by the hash of its inputs, like the
// appliance image, so a second build only imports it.
package mailservers

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/mailcow-ha/mailcow-ha/tail"
)

// entrypoint is the image's /usr/local/sbin/mailserver: the roles postfix and dovecot, and their health check.
//
//go:embed files/mailserver
var entrypoint []byte

// Inputs are what the image is made of; their hash names it.
type Inputs struct {
	Suite    string   // Debian release (default bookworm: dovecot 2.3, the major release mailcow's image runs)
	Mirror   string   // default http://deb.debian.org/debian
	Packages []string // default Packages
}

// Packages are Debian's mail servers and what the entry point uses. usr-is-merged keeps init-system-helpers'
// "usrmerge | usr-is-merged" satisfied when a customize hook purges usrmerge and the perl it brought.
var Packages = []string{"usr-is-merged", "postfix", "dovecot-imapd", "dovecot-lmtpd", "dovecot-pop3d", "dovecot-managesieved", "openssl", "bash", "procps"}

// Repository is the image's name; the tag is the inputs' hash.
const Repository = "mailcow-ha/mailservers"

func (in Inputs) withDefaults() Inputs {
	if in.Suite == "" {
		in.Suite = "bookworm"
	}
	if in.Mirror == "" {
		in.Mirror = "http://deb.debian.org/debian"
	}
	if len(in.Packages) == 0 {
		in.Packages = Packages
	}
	return in
}

// customize are mmdebstrap's customize hooks after the entry point's upload ("$1" is the root file system).
var customize = []string{
	// mailcow's vmail user: uid and gid 5000 own the Maildirs and indexes on the Volume.
	`chroot "$1" groupadd -g 5000 vmail`,
	`chroot "$1" useradd -u 5000 -g 5000 -M -d /var/vmail -s /usr/sbin/nologin vmail`,
	// Debian's dovecot configuration, kept where mailcow's bind over /etc/dovecot does not hide it: the entry point
	// starts dovecot from a copy of it.
	`cp -a "$1"/etc/dovecot "$1"/usr/local/share/mailserver-dovecot`,
	// The self-signed certificate the TLS ports use where mailcow has none, made once here rather than at every
	// start (an openssl process costs seconds under emulation).
	`mkdir -p "$1"/usr/local/share/mailserver-tls`,
	`chroot "$1" openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 -subj /CN=mailserver.invalid -keyout /usr/local/share/mailserver-tls/key.pem -out /usr/local/share/mailserver-tls/cert.pem`,
	`chmod 0600 "$1"/usr/local/share/mailserver-tls/key.pem`,
	// perl came with usrmerge (apt's variant installs it before usr-is-merged arrives) and nothing of the mail
	// servers needs it: 50 of the tarball's 194 MB, loaded on every node.
	`chroot "$1" sh -c 'apt-get purge -y -q usrmerge libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl perl $(dpkg-query -W -f="\${Package} " "perl-modules-*" "libperl5*") >/dev/null'`,
	`rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*`,
}

// Hash is the inputs' hash: suite, mirror, packages, the build's hooks and the entry point.
func (in Inputs) Hash() string {
	in = in.withDefaults()
	h := sha256.New()
	fmt.Fprintf(h, "suite %s\nmirror %s\npackages %s\nhooks %q\n", in.Suite, in.Mirror, strings.Join(in.Packages, ","), customize)
	h.Write(entrypoint)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Tag is the image reference the inputs build.
func (in Inputs) Tag() string { return Repository + ":" + in.Hash() }

// CacheDir is where RootFS keeps the tarballs in a checkout whose top directory is top.
func CacheDir(top string) string { return filepath.Join(top, "build", "cache", "mailservers") }

// Preflight says why the image cannot be built here, or "".
func Preflight() string {
	if os.Geteuid() != 0 {
		return "the mail servers' root file system is made by mmdebstrap as root"
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return "mmdebstrap is not installed (Debian package mmdebstrap)"
	}
	return ""
}

// RootFS returns the cached root file system tarball of the inputs under cacheDir (cacheDir/<hash>.tar), making it
// with mmdebstrap first when it is missing. It logs progress to log.
func RootFS(ctx context.Context, in Inputs, cacheDir string, log io.Writer) (string, error) {
	in = in.withDefaults()
	out := filepath.Join(cacheDir, in.Hash()+".tar")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if why := Preflight(); why != "" {
		return "", fmt.Errorf("mail servers image: %s", why)
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("mail servers image: %w", err)
	}
	// One build at a time: make test's second lane pre-builds while the lab may ask for it; the second waits for the
	// first and then finds the tarball.
	lock, err := os.OpenFile(filepath.Join(cacheDir, in.Hash()+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("mail servers image: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("mail servers image: lock: %w", err)
	}
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	work, err := os.MkdirTemp(cacheDir, "build-")
	if err != nil {
		return "", fmt.Errorf("mail servers image: %w", err)
	}
	defer os.RemoveAll(work)
	ep := filepath.Join(work, "mailserver")
	if err := os.WriteFile(ep, entrypoint, 0o755); err != nil {
		return "", fmt.Errorf("mail servers image: %w", err)
	}
	tmp := filepath.Join(work, "rootfs.tar")
	args := []string{
		"--variant=apt", "--mode=root", "--format=tar",
		"--include=" + strings.Join(in.Packages, ","),
		// No documentation, manual pages or translations: a smaller tarball to import on every node.
		"--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
		"--dpkgopt=path-exclude=/usr/share/locale/*",
		"--customize-hook=upload " + ep + " /usr/local/sbin/mailserver",
		"--customize-hook=chmod 0755 \"$1\"/usr/local/sbin/mailserver",
	}
	for _, h := range customize {
		args = append(args, "--customize-hook="+h)
	}
	args = append(args, in.Suite, tmp, fmt.Sprintf("deb %s %s main", in.Mirror, in.Suite))
	t0 := time.Now()
	fmt.Fprintf(log, "mail servers image %s: mmdebstrap %s (%s)\n", in.Hash(), in.Suite, strings.Join(in.Packages, " "))
	cmd := exec.CommandContext(ctx, "mmdebstrap", args...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("mail servers image: mmdebstrap: %w\n%s", err, tail.Lines(string(b), 20))
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", fmt.Errorf("mail servers image: %w", err)
	}
	fmt.Fprintf(log, "mail servers image %s: root file system in %.1f s\n", in.Hash(), time.Since(t0).Seconds())
	return out, nil
}

// Import loads a root file system tarball into the Engine as tag, with the entry point set, unless the Engine has
// the tag already.
func Import(ctx context.Context, c *client.Client, rootfs, tag string) error {
	if _, err := c.ImageInspect(ctx, tag); err == nil {
		return nil
	}
	f, err := os.Open(rootfs)
	if err != nil {
		return fmt.Errorf("mail servers image: %w", err)
	}
	defer f.Close()
	rc, err := c.ImageImport(ctx, image.ImportSource{Source: f, SourceName: "-"}, tag,
		image.ImportOptions{Changes: []string{`ENTRYPOINT ["/usr/local/sbin/mailserver"]`}})
	if err != nil {
		return fmt.Errorf("mail servers image: docker import: %w", err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return fmt.Errorf("mail servers image: docker import: %w", err)
	}
	if _, err := c.ImageInspect(ctx, tag); err != nil {
		return fmt.Errorf("mail servers image: %s missing after the import: %w", tag, err)
	}
	return nil
}
