package imagebuild

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Target says which path a payload is for.
type Target string

const (
	Hetzner Target = "hetzner" // packer on Hetzner's debian-13
	Local   Target = "local"   // mmdebstrap, for QEMU
)

// Inputs are the files an image is made of: the repository (manifest, scripts, rootfs, cloud-init, docs) and the
// built binaries.
type Inputs struct {
	Top      string // the repository's top directory
	Manifest string // default Top/imagebuild/manifest.toml
	BinDir   string // mailcow-ha, mailcow-signup (and for local images mailcow-stub), built static
	Version  string // the agent's version, recorded in the image
	// MailcowTree is mailcow's release tree that the manifest pins (mailcowtree.Dir): a local image carries it in
	// mailcow's directory, as a Hetzner snapshot carries its clone. Only local images need it.
	MailcowTree string
	// MailServers is the mail servers' root file system tarball (mailservers.RootFS): a local image carries it as a
	// container image (Savers.MailServers), since no registry is reachable there. Only local images need it.
	MailServers string
}

// Savers write the container images that a local image carries, as `docker save` tarballs.
type Savers struct {
	Stub        func(w io.Writer, binary string) error // the stub image from the mailcow-stub binary (deploy.SaveImage)
	MailServers func(w io.Writer, rootfs string) error // the mail servers' image from its root file system (deploy.SaveLayer)
}

// Payload paths of the inputs that become container images rather than files of their own.
const (
	stubSrc        = "bin/mailcow-stub"
	mailServersSrc = "images/mailservers.rootfs"
)

func (in Inputs) manifestPath() string {
	if in.Manifest != "" {
		return in.Manifest
	}
	return filepath.Join(in.Top, "imagebuild", "manifest.toml")
}

// file is one input: where it comes from and where it goes in the payload.
type file struct {
	src, dst string
	mode     fs.FileMode
}

// files lists every input of the payload in a fixed order.
func (in Inputs) files(m *Manifest, t Target) ([]file, error) {
	var out []file
	add := func(src, dst string) error {
		st, err := os.Stat(src)
		if err != nil {
			return fmt.Errorf("image input: %w", err)
		}
		out = append(out, file{src, dst, st.Mode().Perm()})
		return nil
	}
	tree := func(dir, dst string, skip func(rel string) bool) error {
		root := filepath.Join(in.Top, dir)
		return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return fmt.Errorf("image input: %w", err)
			}
			if d.IsDir() {
				return nil
			}
			rel, _ := filepath.Rel(root, p)
			if skip != nil && skip(rel) {
				return nil
			}
			if !d.Type().IsRegular() {
				return fmt.Errorf("image input %s: not a regular file", p)
			}
			return add(p, filepath.Join(dst, rel))
		})
	}
	if err := add(in.manifestPath(), "manifest.toml"); err != nil {
		return nil, err
	}
	if err := tree("imagebuild/provision", "provision", nil); err != nil {
		return nil, err
	}
	// rootfs/ holds Go files for its tests; they are not laid onto the image.
	if err := tree(m.Files.Rootfs, "rootfs", func(rel string) bool { return strings.HasSuffix(rel, ".go") }); err != nil {
		return nil, err
	}
	if err := tree(m.Files.CloudCfg, "cloud.cfg.d", func(rel string) bool { return !strings.HasSuffix(rel, ".cfg") }); err != nil {
		return nil, err
	}
	if err := add(filepath.Join(in.Top, "README.md"), "doc/README.md"); err != nil {
		return nil, err
	}
	if err := tree("docs", "doc", func(rel string) bool { return !strings.HasSuffix(rel, ".md") && !strings.HasSuffix(rel, ".toml") }); err != nil {
		return nil, err
	}
	if err := add(filepath.Join(in.Top, "signup", "nginx", "site.signup.custom"), "mailcow/site.signup.custom"); err != nil {
		return nil, err
	}
	if err := add(filepath.Join(in.Top, "agent", "api", "nginx", "site.mailcow-ha.custom"), "mailcow/site.mailcow-ha.custom"); err != nil {
		return nil, err
	}
	bins := append([]string{}, m.Files.Binaries...)
	if t == Local {
		bins = append(bins, "mailcow-stub") // becomes the stub image, not a file of its own (stubSrc)
	}
	for _, b := range bins {
		if err := add(filepath.Join(in.BinDir, b), "bin/"+b); err != nil {
			return nil, fmt.Errorf("%w (make build puts the binaries into bin/)", err)
		}
	}
	if t == Local {
		if in.MailServers == "" {
			return nil, fmt.Errorf("image input: a local image carries the mail servers' root file system, and none was given")
		}
		if err := add(in.MailServers, mailServersSrc); err != nil {
			return nil, fmt.Errorf("%w (mailcow-ha image mailservers makes it)", err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].dst < out[j].dst })
	return out, nil
}

// Hash is the content hash of everything that goes into an image for target t: every input file's payload path,
// mode and content, plus the target. Two builds with the same hash would lay the same files.
func (in Inputs) Hash(t Target) (string, *Manifest, error) {
	m, err := LoadManifest(in.manifestPath())
	if err != nil {
		return "", nil, err
	}
	files, err := in.files(m, t)
	if err != nil {
		return "", nil, err
	}
	h := sha256.New()
	fmt.Fprintf(h, "mailcow-ha image v1\x00%s\x00%s\x00", t, in.Version)
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%o\x00", f.dst, f.mode)
		r, err := os.Open(f.src)
		if err != nil {
			return "", nil, err
		}
		n, err := io.Copy(h, r)
		r.Close()
		if err != nil {
			return "", nil, err
		}
		fmt.Fprintf(h, "\x00%d\x00", n)
	}
	if t == Local {
		if err := in.hashTree(h); err != nil {
			return "", nil, err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], m, nil
}

// hashTree adds mailcow's tree to a local image's hash: every path with its mode, and a file's content or a link's
// target.
func (in Inputs) hashTree(h io.Writer) error {
	if in.MailcowTree == "" {
		return fmt.Errorf("image input: a local image carries mailcow's release tree, and none was given")
	}
	if _, err := os.Stat(filepath.Join(in.MailcowTree, "docker-compose.yml")); err != nil {
		return fmt.Errorf("image input: mailcow's tree: %w", err)
	}
	return filepath.WalkDir(in.MailcowTree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("image input: %w", err)
		}
		rel, _ := filepath.Rel(in.MailcowTree, p)
		fmt.Fprintf(h, "mailcow/tree/%s\x00%o\x00", rel, d.Type())
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("image input: %w", err)
			}
			fmt.Fprintf(h, "%s\x00", target)
		case d.Type().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return fmt.Errorf("image input: %w", err)
			}
			defer f.Close()
			if _, err := io.Copy(h, f); err != nil {
				return fmt.Errorf("image input: %w", err)
			}
			if info, err := f.Stat(); err == nil {
				fmt.Fprintf(h, "\x00%o\x00", info.Mode().Perm())
			}
		}
		return nil
	})
}

// WritePayload assembles the payload that provision/run.sh works from into dir (created; must not exist):
// manifest.env, provision/, rootfs/, cloud.cfg.d/, bin/, doc/, mailcow/, and for local images images/ with the stub
// image and the mail servers' image as docker save tarballs (made by save) and mailcow/tree/, mailcow's release tree.
func (in Inputs) WritePayload(dir string, t Target, save Savers) (*Manifest, error) {
	m, err := LoadManifest(in.manifestPath())
	if err != nil {
		return nil, err
	}
	files, err := in.files(m, t)
	if err != nil {
		return nil, err
	}
	if t == Local && in.MailcowTree == "" {
		return nil, fmt.Errorf("payload: a local image carries mailcow's release tree, and none was given")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	for _, f := range files {
		var saver func(w io.Writer, src string) error
		var name string
		switch f.dst {
		case stubSrc:
			saver, name = save.Stub, "mailcow-stub"
		case mailServersSrc:
			saver, name = save.MailServers, "mailservers"
		default:
			if err := copyFile(f.src, filepath.Join(dir, f.dst), f.mode); err != nil {
				return nil, fmt.Errorf("payload: %w", err)
			}
			continue
		}
		if saver == nil {
			return nil, fmt.Errorf("payload: a local image needs the %s image saved", name)
		}
		if err := writeWith(filepath.Join(dir, "images", name+".tar"), 0o644, func(w io.Writer) error { return saver(w, f.src) }); err != nil {
			return nil, fmt.Errorf("payload: %s image: %w", name, err)
		}
	}
	if t == Local {
		// cp -a keeps the tree as git archive made it, with its symbolic link (.env → mailcow.conf).
		if out, err := exec.Command("cp", "-a", "--", in.MailcowTree+"/.", filepath.Join(dir, "mailcow", "tree")).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("payload: mailcow's tree: %w: %s", err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.env"), m.Env(in.Version), 0o644); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	return m, nil
}

func copyFile(src, dst string, mode fs.FileMode) error {
	r, err := os.Open(src)
	if err != nil {
		return err
	}
	defer r.Close()
	return writeWith(dst, mode, func(w io.Writer) error {
		_, err := io.Copy(w, r)
		return err
	})
}

func writeWith(dst string, mode fs.FileMode, fill func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	w, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if err := fill(w); err != nil {
		w.Close()
		return err
	}
	if err := w.Chmod(mode); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// BinaryVersion asks a built mailcow-ha binary for its version (the one the image will carry).
func BinaryVersion(bin string) (string, error) {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "", fmt.Errorf("%s version: %w (make build puts the binaries into bin/)", bin, err)
	}
	return strings.TrimSpace(string(out)), nil
}
