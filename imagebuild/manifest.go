// Package imagebuild builds the appliance image from one manifest (imagebuild/manifest.toml) and one set of
// provisioning steps (imagebuild/provision/*.sh): it assembles the payload that both paths provision from (packer
// on Hetzner, mmdebstrap locally), and runs the local build (mmdebstrap, mkfs.ext4 -d, a qcow2, the kernel and
// initrd for direct boot), cached by a hash of its inputs.
package imagebuild

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// Manifest is imagebuild/manifest.toml.
type Manifest struct {
	Version int    `toml:"version"`
	Name    string `toml:"name"`
	Debian  struct {
		Suite          string   `toml:"suite"`
		Mirror         string   `toml:"mirror"`
		SecurityMirror string   `toml:"security_mirror"`
		Components     []string `toml:"components"`
		Packages       []string `toml:"packages"`
		LocalPackages  []string `toml:"local_packages"`
	} `toml:"debian"`
	Mailcow struct {
		Repo       string `toml:"repo"`
		Tag        string `toml:"tag"`
		Commit     string `toml:"commit"`
		Dir        string `toml:"dir"`
		DockerMin  string `toml:"docker_min"`  // the least Docker Engine version (mailcow refuses older)
		ComposeMin string `toml:"compose_min"` // the least Compose v2 version (the override's !override)
		StubImages string `toml:"stub_images"`
	} `toml:"mailcow"`
	Files struct {
		Rootfs   string   `toml:"rootfs"`
		CloudCfg string   `toml:"cloud_cfg"`
		Binaries []string `toml:"binaries"`
	} `toml:"files"`
	Units struct {
		Enable  []string `toml:"enable"`
		Disable []string `toml:"disable"`
		Mask    []string `toml:"mask"`
	} `toml:"units"`
	Local struct {
		Size            string `toml:"size"`
		Label           string `toml:"label"`
		KernelCmdline   string `toml:"kernel_cmdline"`
		SourceDateEpoch int64  `toml:"source_date_epoch"`
	} `toml:"local"`
}

var (
	pkgName  = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	unitName = regexp.MustCompile(`^[A-Za-z0-9@._-]+\.(service|timer|socket|target|path|mount)$`)
	sizeRe   = regexp.MustCompile(`^[1-9][0-9]*[MG]$`)
	commitRe = regexp.MustCompile(`^[0-9a-f]{40}$`)
	// What may stand in a shell word of manifest.env without quoting trouble.
	plainValue = regexp.MustCompile(`^[A-Za-z0-9@%+=:,./_ -]*$`)
)

// LoadManifest reads and checks a manifest. Errors name the key (and for syntax errors the line).
func LoadManifest(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return ParseManifest(path, b)
}

// ParseManifest decodes and checks a manifest's text; name is used in errors.
func ParseManifest(name string, b []byte) (*Manifest, error) {
	var m Manifest
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&m)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s:%d: %s", name, pe.Position.Line, pe.Message)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var problems []string
	for _, k := range md.Undecoded() {
		problems = append(problems, fmt.Sprintf("%s: unknown key", k.String()))
	}
	problems = append(problems, m.check()...)
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, fmt.Errorf("%s: %s", name, strings.Join(problems, "; "))
	}
	return &m, nil
}

func (m *Manifest) check() []string {
	var p []string
	req := func(key, v string) {
		if v == "" {
			p = append(p, key+": required")
		} else if !plainValue.MatchString(v) {
			p = append(p, fmt.Sprintf("%s: %q has characters the provisioning scripts do not take", key, v))
		}
	}
	if m.Version != 1 {
		p = append(p, fmt.Sprintf("version: %d: this build knows version 1", m.Version))
	}
	req("name", m.Name)
	req("debian.suite", m.Debian.Suite)
	req("debian.mirror", m.Debian.Mirror)
	req("mailcow.repo", m.Mailcow.Repo)
	req("mailcow.tag", m.Mailcow.Tag)
	req("mailcow.commit", m.Mailcow.Commit)
	req("mailcow.dir", m.Mailcow.Dir)
	req("mailcow.docker_min", m.Mailcow.DockerMin)
	req("mailcow.compose_min", m.Mailcow.ComposeMin)
	req("mailcow.stub_images", m.Mailcow.StubImages)
	req("files.rootfs", m.Files.Rootfs)
	req("files.cloud_cfg", m.Files.CloudCfg)
	req("local.label", m.Local.Label)
	req("local.kernel_cmdline", m.Local.KernelCmdline)
	if len(m.Debian.Components) == 0 {
		p = append(p, "debian.components: required")
	}
	for key, list := range map[string][]string{"debian.packages": m.Debian.Packages, "debian.local_packages": m.Debian.LocalPackages} {
		if len(list) == 0 {
			p = append(p, key+": required")
		}
		for i, v := range list {
			if !pkgName.MatchString(v) {
				p = append(p, fmt.Sprintf("%s[%d]: %q is not a Debian package name", key, i, v))
			}
		}
	}
	for key, list := range map[string][]string{"units.enable": m.Units.Enable, "units.disable": m.Units.Disable, "units.mask": m.Units.Mask} {
		for i, v := range list {
			if !unitName.MatchString(v) {
				p = append(p, fmt.Sprintf("%s[%d]: %q is not a unit name", key, i, v))
			}
		}
	}
	for _, u := range m.Units.Enable {
		for _, d := range append(append([]string{}, m.Units.Disable...), m.Units.Mask...) {
			if u == d {
				p = append(p, fmt.Sprintf("units: %s is both enabled and disabled or masked", u))
			}
		}
	}
	if !slices.Contains(m.Units.Enable, "mailcow-ha.service") {
		p = append(p, "units.enable: must enable mailcow-ha.service")
	}
	for _, u := range []string{"keepalived.service", "mariadb.service"} {
		if !slices.Contains(m.Units.Disable, u) {
			p = append(p, fmt.Sprintf("units.disable: must disable %s (the agent starts it)", u))
		}
	}
	for i, b := range m.Files.Binaries {
		if b == "" || strings.ContainsAny(b, "/ ") {
			p = append(p, fmt.Sprintf("files.binaries[%d]: %q is not a command name", i, b))
		}
	}
	if !slices.Contains(m.Files.Binaries, "mailcow-ha") {
		p = append(p, "files.binaries: must contain mailcow-ha")
	}
	if !sizeRe.MatchString(m.Local.Size) {
		p = append(p, fmt.Sprintf("local.size: %q: a size such as 8G or 4096M", m.Local.Size))
	}
	if !strings.HasPrefix(m.Mailcow.Dir, "/") || !strings.HasPrefix(m.Mailcow.StubImages, "/") {
		p = append(p, "mailcow.dir, mailcow.stub_images: absolute paths")
	}
	if m.Mailcow.Commit != "" && !commitRe.MatchString(m.Mailcow.Commit) {
		p = append(p, fmt.Sprintf("mailcow.commit: %q: the tag's full commit id (40 lower-case hex digits)", m.Mailcow.Commit))
	}
	if m.Local.SourceDateEpoch <= 0 {
		p = append(p, "local.source_date_epoch: required (seconds since 1970)")
	}
	return p
}

// Env renders the manifest for the provisioning scripts: one VAR='value' line per setting.
func (m *Manifest) Env(version string) []byte {
	var b bytes.Buffer
	b.WriteString("# Rendered from imagebuild/manifest.toml by mailcow-ha image; sourced by provision/run.sh.\n")
	set := func(k, v string) { fmt.Fprintf(&b, "%s='%s'\n", k, strings.ReplaceAll(v, "'", "")) }
	j := func(l []string) string { return strings.Join(l, " ") }
	set("MCHA_VERSION", version)
	set("MCHA_NAME", m.Name)
	set("MCHA_PACKAGES", j(m.Debian.Packages))
	set("MCHA_LOCAL_PACKAGES", j(m.Debian.LocalPackages))
	set("MCHA_BINARIES", j(m.Files.Binaries))
	set("MCHA_ENABLE", j(m.Units.Enable))
	set("MCHA_DISABLE", j(m.Units.Disable))
	set("MCHA_MASK", j(m.Units.Mask))
	set("MCHA_MAILCOW_REPO", m.Mailcow.Repo)
	set("MCHA_MAILCOW_TAG", m.Mailcow.Tag)
	set("MCHA_MAILCOW_COMMIT", m.Mailcow.Commit)
	set("MCHA_MAILCOW_DIR", m.Mailcow.Dir)
	set("MCHA_DOCKER_MIN", m.Mailcow.DockerMin)
	set("MCHA_COMPOSE_MIN", m.Mailcow.ComposeMin)
	set("MCHA_STUB_IMAGES", m.Mailcow.StubImages)
	set("MCHA_LOCAL_LABEL", m.Local.Label)
	return b.Bytes()
}
