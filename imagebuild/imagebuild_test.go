package imagebuild

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/release"
)

const top = ".."

// The shipped manifest is valid and says what the issue asks for.
func TestShippedManifest(t *testing.T) {
	m, err := LoadManifest("manifest.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"docker.io", "docker-cli", "docker-compose", "mariadb-server", "galera-4", "mariadb-backup", "keepalived", "cloud-init", "nftables", "iproute2", "apparmor", "rsync", "stunnel4", "socat", "udev", "dbus", "restic"} {
		if !slices.Contains(m.Debian.Packages, p) {
			t.Errorf("packages lack %s", p)
		}
	}
	for _, u := range m.Units.Enable {
		if !unitExists(u) {
			t.Errorf("units.enable: %s is neither in rootfs/ nor a unit of the manifest's packages we know", u)
		}
	}
	env := string(m.Env("v1.2.3"))
	for _, want := range []string{"MCHA_VERSION='v1.2.3'", "MCHA_DISABLE='mariadb.service keepalived.service", "MCHA_MAILCOW_TAG='" + m.Mailcow.Tag + "'"} {
		if !strings.Contains(env, want) {
			t.Errorf("manifest.env lacks %q:\n%s", want, env)
		}
	}
	// The rendered file is valid shell that sets every variable the provisioning scripts use.
	cmd := exec.Command("bash", "-c", "set -eu; set -a; . /dev/stdin; set +a; env | grep ^MCHA_ | sort")
	cmd.Stdin = strings.NewReader(env)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	scripts, _ := filepath.Glob("provision/*.sh")
	for _, s := range scripts {
		b, _ := os.ReadFile(s)
		for _, word := range strings.FieldsFunc(string(b), func(r rune) bool { return !(r == '_' || r >= 'A' && r <= 'Z') }) {
			if strings.HasPrefix(word, "MCHA_") && word != "MCHA_TARGET" && word != "MCHA_PAYLOAD" && !strings.Contains(string(out), word+"=") {
				t.Errorf("%s uses %s, which manifest.env does not set", s, word)
			}
		}
	}
}

func unitExists(u string) bool {
	if _, err := os.Stat(filepath.Join(top, "rootfs/usr/lib/systemd/system", u)); err == nil {
		return true
	}
	// Units that Debian's packages of the manifest ship.
	return slices.Contains([]string{"docker.service", "nftables.service", "systemd-networkd.service", "systemd-timesyncd.service", "ssh.service",
		"cloud-init-local.service", "cloud-init-main.service", "cloud-init-network.service", "cloud-config.service", "cloud-final.service"}, u)
}

// Bad manifests are refused with the key or the line.
func TestManifestErrors(t *testing.T) {
	good, err := os.ReadFile("manifest.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, from, to, want string }{
		{"syntax", "[mailcow]", "[mailcow", "bad.toml:"},
		{"unknown key", "[mailcow]\n", "[mailcow]\nflavour = \"x\"\n", "mailcow.flavour: unknown key"},
		{"agent not enabled", `"mailcow-ha.service", `, "", "units.enable: must enable mailcow-ha.service"},
		{"keepalived enabled", `disable = ["mariadb.service", "keepalived.service", `, `disable = ["mariadb.service", `, "must disable keepalived.service"},
		{"bad package", `"jq", `, `"jq; rm -rf /", `, `is not a Debian package name`},
		{"bad size", `size = "8G"`, `size = "huge"`, "local.size"},
		{"quote in tag", `tag = "`, `tag = "x'`, "mailcow.tag"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := bytes.Replace(good, []byte(c.from), []byte(c.to), 1)
			if bytes.Equal(b, good) {
				t.Fatalf("%q not in the manifest", c.from)
			}
			_, err := ParseManifest("bad.toml", b)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want %q", err, c.want)
			}
		})
	}
}

func fakeBins(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, b := range []string{"mailcow-ha", "mailcow-ha-check", "mailcow-signup", "mailcow-stub"} {
		if err := os.WriteFile(filepath.Join(dir, b), []byte("binary "+b), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// fakeRootFS is the mail servers' root file system tarball as mailservers.RootFS names it.
func fakeRootFS(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "0123456789abcdef.tar")
	if err := os.WriteFile(p, []byte("rootfs"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeTree is a mailcow tree as git archive makes it: a compose file and .env linked to mailcow.conf.
func fakeTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "docker-compose.yml"), []byte("services: {}\n"), 0o644)
	os.Mkdir(filepath.Join(dir, "data"), 0o755)
	os.WriteFile(filepath.Join(dir, "data", "generate.sh"), []byte("#!/bin/sh\n"), 0o755)
	if err := os.Symlink("mailcow.conf", filepath.Join(dir, ".env")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// The input hash is stable, and changes with any input: a script, a rootfs file, a binary, a file of mailcow's tree
// (local images); Go test files in rootfs/ are not inputs.
func TestHash(t *testing.T) {
	bin := fakeBins(t)
	tree := fakeTree(t)
	in := Inputs{Top: top, BinDir: bin, Version: "v1", MailcowTree: tree, MailServers: fakeRootFS(t)}
	h1, _, err := in.Hash(Local)
	if err != nil {
		t.Fatal(err)
	}
	h2, _, _ := in.Hash(Local)
	hz, _, _ := in.Hash(Hetzner)
	if h1 != h2 || h1 == hz || len(h1) != 16 {
		t.Fatalf("hashes %s %s %s", h1, h2, hz)
	}
	os.WriteFile(filepath.Join(bin, "mailcow-ha"), []byte("other"), 0o755)
	if h3, _, _ := in.Hash(Local); h3 == h1 {
		t.Error("a changed binary keeps the hash")
	}
	os.WriteFile(filepath.Join(bin, "mailcow-ha"), []byte("binary mailcow-ha"), 0o755)
	if h4, _, _ := in.Hash(Local); h4 != h1 {
		t.Error("the same binary again: another hash")
	}
	os.WriteFile(filepath.Join(tree, "data", "generate.sh"), []byte("#!/bin/sh\nexit 1\n"), 0o755)
	h5, _, _ := in.Hash(Local)
	if h5 == h1 {
		t.Error("a changed file of mailcow's tree keeps the hash")
	}
	if h6, _, _ := in.Hash(Hetzner); h6 != hz {
		t.Error("mailcow's tree changed a Hetzner payload's hash; that path clones the release itself")
	}
	if _, _, err := (Inputs{Top: top, BinDir: bin, Version: "v1", MailServers: in.MailServers}).Hash(Local); err == nil || !strings.Contains(err.Error(), "mailcow's release tree") {
		t.Errorf("a local image without mailcow's tree: %v", err)
	}
	if _, _, err := (Inputs{Top: top, BinDir: bin, Version: "v1", MailcowTree: tree}).Hash(Local); err == nil || !strings.Contains(err.Error(), "mail servers' root file system") {
		t.Errorf("a local image without the mail servers: %v", err)
	}
	os.WriteFile(in.MailServers, []byte("another rootfs"), 0o644)
	if h7, _, _ := in.Hash(Local); h7 == h5 {
		t.Error("a changed root file system of the mail servers keeps the hash")
	}
	files, err := in.files(mustManifest(t), Local)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f.dst, ".go") {
			t.Errorf("input %s: Go files are not laid onto the image", f.dst)
		}
	}
}

func mustManifest(t *testing.T) *Manifest {
	m, err := LoadManifest("manifest.toml")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The payload has what run.sh expects, with modes kept; a local one carries the stub images and mailcow's tree (its
// link kept), a Hetzner one neither.
func TestPayload(t *testing.T) {
	bin := fakeBins(t)
	in := Inputs{Top: top, BinDir: bin, Version: "v1", MailcowTree: fakeTree(t), MailServers: fakeRootFS(t)}
	for _, tg := range []Target{Local, Hetzner} {
		dir := filepath.Join(t.TempDir(), "p")
		var saved int
		save := func(w io.Writer, src string) error { saved++; _, err := io.WriteString(w, "tar"); return err }
		if _, err := in.WritePayload(dir, tg, Savers{Stub: save, MailServers: save}); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"manifest.env", "provision/run.sh", "provision/90-cleanup.sh", "rootfs/etc/nftables.conf",
			"rootfs/usr/lib/systemd/system/mailcow-ha.service", "cloud.cfg.d/90-mailcow-ha.cfg", "bin/mailcow-ha", "bin/mailcow-signup", "mailcow/site.signup.custom", "mailcow/site.mailcow-ha.custom", "doc/README.md"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Errorf("%s payload: %v", tg, err)
			}
		}
		if st, err := os.Stat(filepath.Join(dir, "provision/run.sh")); err != nil || st.Mode().Perm()&0o100 == 0 {
			t.Errorf("%s: run.sh not executable", tg)
		}
		if _, err := os.Stat(filepath.Join(dir, "rootfs/unit_test.go")); err == nil {
			t.Errorf("%s: Go test file in the payload", tg)
		}
		_, err := os.Stat(filepath.Join(dir, "images/mailcow-stub.tar"))
		_, merr := os.Stat(filepath.Join(dir, "images/mailservers.tar"))
		if (tg == Local) != (err == nil) || (tg == Local) != (merr == nil) || (tg == Local) != (saved == 2) {
			t.Errorf("%s: stub image present=%v, mail servers' image present=%v, saved=%d", tg, err == nil, merr == nil, saved)
		}
		link, _ := os.Readlink(filepath.Join(dir, "mailcow/tree/.env"))
		st, err := os.Stat(filepath.Join(dir, "mailcow/tree/data/generate.sh"))
		if tg == Local && (link != "mailcow.conf" || err != nil || st.Mode().Perm() != 0o755) {
			t.Errorf("%s: mailcow's tree in the payload: .env → %q, generate.sh %v", tg, link, err)
		}
		if tg == Hetzner && err == nil {
			t.Errorf("%s: mailcow's tree in the payload; Hetzner clones it", tg)
		}
	}
}

// The provisioning scripts are valid bash, strict, and each runs without the others' leftovers.
func TestScripts(t *testing.T) {
	scripts, _ := filepath.Glob("provision/*.sh")
	if len(scripts) < 6 {
		t.Fatalf("scripts: %v", scripts)
	}
	for _, s := range scripts {
		if out, err := exec.Command("bash", "-n", s).CombinedOutput(); err != nil {
			t.Errorf("%s: %v %s", s, err, out)
		}
		b, _ := os.ReadFile(s)
		if !strings.Contains(string(b), "set -euo pipefail") {
			t.Errorf("%s: not strict (set -euo pipefail)", s)
		}
	}
	// run.sh refuses an unknown target with a clear message.
	cmd := exec.Command("bash", "provision/run.sh")
	cmd.Env = append(os.Environ(), "MCHA_TARGET=elsewhere")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "must be hetzner or local") {
		t.Errorf("run.sh with a bad target: %v %s", err, out)
	}
}

// 40-mailcow.sh stops the build before it touches anything when Debian's Docker or Compose is older than the
// manifest's least versions (Debian 12's 20.10 and Compose v1 would pass the build and fail mailcow's scripts).
func TestLeastVersions(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("needs dpkg's version comparison")
	}
	m, err := LoadManifest("manifest.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ docker, compose, want string }{
		{"20.10.24+dfsg1-1+deb12u1+b6", "1.29.2-3", "docker.io is 20.10.24+dfsg1-1+deb12u1+b6; mailcow-ha needs at least " + m.Mailcow.DockerMin},
		{"26.1.5+dfsg1-9+deb13u1+b1", "1.29.2-3", "docker-compose is 1.29.2-3; mailcow-ha needs at least " + m.Mailcow.ComposeMin},
		{"26.1.5+dfsg1-9+deb13u1+b1", "2.24.2-1", "docker-compose is 2.24.2-1"},
		{"26.1.5+dfsg1-9+deb13u1+b1", "", "docker-compose is not installed"},
		// Debian 13's: the checks pass and say so.
		{"26.1.5+dfsg1-9+deb13u1+b1", "2.26.1-4", "mailcow: docker-compose 2.26.1-4 (at least " + m.Mailcow.ComposeMin + ")"},
	} {
		fake := t.TempDir()
		// dpkg-query answers with the versions of the case. The script is given no MCHA_STUB_IMAGES: when the
		// checks pass it stops at that unset variable (set -u) before it installs anything outside its temp dirs.
		script := "#!/bin/sh\nfor p; do :; done\ncase \"$p\" in docker.io) printf %s '" + c.docker + "';; docker-compose) [ -n '" + c.compose + "' ] || exit 1; printf %s '" + c.compose + "';; esac\n"
		if err := os.WriteFile(filepath.Join(fake, "dpkg-query"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("bash", "provision/40-mailcow.sh")
		cmd.Env = append(os.Environ(), "PATH="+fake+":"+os.Getenv("PATH"), "MCHA_MAILCOW_DIR="+t.TempDir(), "MCHA_TARGET=none",
			"MCHA_DOCKER_MIN="+m.Mailcow.DockerMin, "MCHA_COMPOSE_MIN="+m.Mailcow.ComposeMin, "MCHA_PAYLOAD="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("docker.io %s, docker-compose %s: %v %s; want %q", c.docker, c.compose, err, out, c.want)
		}
	}
}

// Old images are pruned to Keep, the current one and unrelated folders never.
func TestPrune(t *testing.T) {
	dir := t.TempDir()
	names := []string{"0000000000000001", "0000000000000002", "0000000000000003", "0000000000000004", "0000000000000005"}
	for i, n := range names {
		os.MkdirAll(filepath.Join(dir, n), 0o755)
		tm := time.Now().Add(time.Duration(i) * time.Minute)
		os.Chtimes(filepath.Join(dir, n), tm, tm)
	}
	os.MkdirAll(filepath.Join(dir, "cache"), 0o755)
	os.MkdirAll(filepath.Join(dir, "0000000000000009.work"), 0o755)
	removed := prune(dir, "0000000000000001", 3)
	left, _ := os.ReadDir(dir)
	var got []string
	for _, e := range left {
		got = append(got, e.Name())
	}
	want := "0000000000000001 0000000000000004 0000000000000005 cache"
	if strings.Join(got, " ") != want {
		t.Errorf("left %v, want %s (removed %v)", got, want, removed)
	}
}

// The image records the release its mailcow tree holds where `mailcow-ha mailcow update` reads it.
func TestImageRecordsMailcowRelease(t *testing.T) {
	b, err := os.ReadFile("provision/40-mailcow.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`>"$dir/` + release.RecordFile + `"`, `>"$dir/` + release.ManifestFile + `"`, "sha256sum"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("provision/40-mailcow.sh does not write %s", want)
		}
	}
}
