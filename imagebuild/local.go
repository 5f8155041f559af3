package imagebuild

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mailcow-ha/mailcow-ha/lab/reap"
	"github.com/mailcow-ha/mailcow-ha/tail"
)

// Image is a built local image: the files in Dir and what they were made from.
type Image struct {
	Dir           string  `json:"-"`
	Hash          string  `json:"hash"`
	Version       string  `json:"version"`
	Disk          string  `json:"disk"`   // qcow2, relative to Dir
	Kernel        string  `json:"kernel"` // vmlinuz, relative to Dir
	Initrd        string  `json:"initrd"`
	KernelCmdline string  `json:"kernel_cmdline"`
	Label         string  `json:"label"`
	DiskBytes     int64   `json:"disk_bytes"`   // the qcow2's size on the host
	RootfsBytes   int64   `json:"rootfs_bytes"` // the files in the root file system
	Stages        []Stage `json:"stages"`
	Built         string  `json:"built"`
	Cached        bool    `json:"-"` // found in the cache, not built now
}

// Stage is one timed step of a build.
type Stage struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// Path returns the absolute path of a file of the image.
func (im *Image) Path(rel string) string { return filepath.Join(im.Dir, rel) }

// LocalOptions configure BuildLocal.
type LocalOptions struct {
	Inputs
	Out      string    // images go to Out/<hash>/ (default Top/build/image)
	DebCache string    // downloaded .debs, kept between builds (default Top/build/cache/debs)
	Force    bool      // build even when the hash is cached
	Log      io.Writer // progress and stage times (default io.Discard)
	Save     Savers    // the container images the image carries
}

// Tools the local build runs, with the Debian package of each.
var localTools = map[string]string{"mmdebstrap": "mmdebstrap", "mkfs.ext4": "e2fsprogs", "qemu-img": "qemu-utils"}

// LocalPreflight says why a local build cannot run here, or "".
func LocalPreflight() string {
	if os.Geteuid() != 0 {
		return "the local image build runs mmdebstrap as root (chroot, device nodes, file ownership)"
	}
	for bin, pkg := range localTools {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Sprintf("%s is not installed (Debian package %s)", bin, pkg)
		}
	}
	return ""
}

// BuildLocal builds the local image, or returns the cached one with the same input hash.
func BuildLocal(ctx context.Context, o LocalOptions) (*Image, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Out == "" {
		o.Out = filepath.Join(o.Top, "build", "image")
	}
	if o.DebCache == "" {
		o.DebCache = filepath.Join(o.Top, "build", "cache", "debs")
	}
	t0 := time.Now()
	hash, m, err := o.Hash(Local)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(o.Out, hash)
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	// A module file of its own keeps the go command's ./... out of the output folder: a rootfs being built has
	// /proc mounted, and go build ./... would walk into it.
	if err := os.WriteFile(filepath.Join(o.Out, "go.mod"), []byte("// Build output: not Go code. This file keeps ./... out of it.\nmodule ignore\n"), 0o644); err != nil {
		return nil, err
	}
	// One build at a time per output folder (make image and the VM tests may race).
	lock, err := os.OpenFile(filepath.Join(o.Out, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("image: lock: %w", err)
	}
	if !o.Force {
		if im, err := Open(dir); err == nil {
			im.Cached = true
			fmt.Fprintf(o.Log, "image %s: cached (inputs unchanged), %s\n", hash, dir)
			fmt.Fprintf(o.Log, "image: done in %.1f s\n", time.Since(t0).Seconds())
			return im, nil
		}
	}
	if why := LocalPreflight(); why != "" {
		return nil, errors.New("image: " + why)
	}
	fmt.Fprintf(o.Log, "image %s: building into %s\n", hash, dir)
	work := dir + ".work"
	// Nothing mounted may stay below the work folder when it is removed: RemoveAll would walk into the mount.
	if err := reap.UnmountBelow(work); err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	os.RemoveAll(work)
	os.RemoveAll(dir)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	// A build that dies leaves its mounts to the next sweep (lab/reap).
	if err := reap.Claim(reap.Mounts, work, "", "image build"); err != nil {
		return nil, err
	}
	defer func() {
		if reap.UnmountBelow(work) == nil {
			os.RemoveAll(work)
			reap.Release(reap.Mounts, work)
		}
	}()
	im := &Image{Dir: dir, Hash: hash, Version: o.Version, Disk: "disk.qcow2", Kernel: "vmlinuz", Initrd: "initrd.img",
		KernelCmdline: m.Local.KernelCmdline, Label: m.Local.Label}
	stage := func(name string, f func() error) error {
		s := time.Now()
		fmt.Fprintf(o.Log, "image: %s ...\n", name)
		if err := f(); err != nil {
			return fmt.Errorf("image: %s: %w", name, err)
		}
		d := time.Since(s).Seconds()
		im.Stages = append(im.Stages, Stage{name, d})
		fmt.Fprintf(o.Log, "image: %s: %.1f s\n", name, d)
		return nil
	}
	payload := filepath.Join(work, "payload")
	root := filepath.Join(work, "rootfs")
	raw := filepath.Join(work, "disk.raw")
	out := filepath.Join(work, "out")
	if err := stage("payload", func() error {
		_, err := o.WritePayload(payload, Local, o.Save)
		return err
	}); err != nil {
		return nil, err
	}
	if err := stage("rootfs (mmdebstrap + provisioning)", func() error {
		return o.mmdebstrap(ctx, m, payload, root)
	}); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	copyFile(filepath.Join(work, "mmdebstrap.log"), filepath.Join(out, "mmdebstrap.log"), 0o644)
	if err := stage("kernel and initrd", func() error {
		for _, k := range []struct{ glob, dst string }{{"vmlinuz-*", im.Kernel}, {"initrd.img-*", im.Initrd}} {
			found, _ := filepath.Glob(filepath.Join(root, "boot", k.glob))
			if len(found) != 1 {
				return fmt.Errorf("boot/%s: found %d", k.glob, len(found))
			}
			if err := copyFile(found[0], filepath.Join(out, k.dst), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := stage("mkfs.ext4 -d", func() error {
		im.RootfsBytes = duBytes(root)
		return run(exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-L", m.Local.Label, "-d", root, "-E", "root_owner=0:0", raw, m.Local.Size))
	}); err != nil {
		return nil, err
	}
	if err := stage("qcow2", func() error {
		if err := run(exec.CommandContext(ctx, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, filepath.Join(out, im.Disk))); err != nil {
			return err
		}
		st, err := os.Stat(filepath.Join(out, im.Disk))
		if err == nil {
			im.DiskBytes = st.Size()
		}
		return err
	}); err != nil {
		return nil, err
	}
	im.Built = time.Now().UTC().Format(time.RFC3339)
	b, _ := json.MarshalIndent(im, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "image.json"), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(out, dir); err != nil {
		return nil, err
	}
	latest := filepath.Join(o.Out, "latest")
	os.Remove(latest)
	os.Symlink(hash, latest)
	if removed := prune(o.Out, hash, Keep); len(removed) > 0 {
		fmt.Fprintf(o.Log, "image: removed older images %s (keeping %d)\n", strings.Join(removed, " "), Keep)
	}
	fmt.Fprintf(o.Log, "image %s: rootfs %d MiB, qcow2 %d MiB, in %s\n", hash, im.RootfsBytes>>20, im.DiskBytes>>20, dir)
	fmt.Fprintf(o.Log, "image: done in %.1f s\n", time.Since(t0).Seconds())
	return im, nil
}

// Keep is how many built images stay in the output folder (each takes about 1 GiB).
const Keep = 3

var hashName = regexp.MustCompile(`^[0-9a-f]{16}$`)

// prune removes all but the newest keep images (never current) and leftovers of interrupted builds.
func prune(out, current string, keep int) []string {
	entries, err := os.ReadDir(out)
	if err != nil {
		return nil
	}
	type img struct {
		name string
		mod  time.Time
	}
	var imgs []img
	var removed []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if strings.HasSuffix(e.Name(), ".work") {
			if reap.UnmountBelow(filepath.Join(out, e.Name())) == nil {
				os.RemoveAll(filepath.Join(out, e.Name()))
			}
			continue
		}
		if !hashName.MatchString(e.Name()) || e.Name() == current {
			continue
		}
		if fi, err := e.Info(); err == nil {
			imgs = append(imgs, img{e.Name(), fi.ModTime()})
		}
	}
	sort.Slice(imgs, func(i, j int) bool { return imgs[i].mod.After(imgs[j].mod) })
	for i, im := range imgs {
		if i >= keep-1 {
			os.RemoveAll(filepath.Join(out, im.name))
			removed = append(removed, im.name)
		}
	}
	return removed
}

// Open reads a built image's description from its folder.
func Open(dir string) (*Image, error) {
	b, err := os.ReadFile(filepath.Join(dir, "image.json"))
	if err != nil {
		return nil, err
	}
	var im Image
	if err := json.Unmarshal(b, &im); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	im.Dir = dir
	for _, f := range []string{im.Disk, im.Kernel, im.Initrd} {
		if _, err := os.Stat(im.Path(f)); err != nil {
			return nil, err
		}
	}
	return &im, nil
}

// mmdebstrap makes the root file system in root: minbase plus the manifest's packages, the .deb cache synced in
// and out, then the payload's provisioning run in the chroot (MCHA_TARGET=local).
func (o LocalOptions) mmdebstrap(ctx context.Context, m *Manifest, payload, root string) error {
	if err := os.MkdirAll(o.DebCache, 0o755); err != nil {
		return err
	}
	comps := strings.Join(m.Debian.Components, " ")
	suite := m.Debian.Suite
	args := []string{
		"--variant=minbase", "--mode=root", "--format=directory",
		"--include=" + strings.Join(append(append([]string{}, m.Debian.Packages...), m.Debian.LocalPackages...), ","),
		"--skip=essential/unlink",
		"--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/",
		"--setup-hook=sync-in " + o.DebCache + " /var/cache/apt/archives/",
		"--customize-hook=sync-out /var/cache/apt/archives " + o.DebCache,
		"--customize-hook=rm -f \"$1\"/var/cache/apt/archives/*.deb",
		"--customize-hook=mkdir -p \"$1\"/tmp/mailcow-ha-payload",
		"--customize-hook=sync-in " + payload + " /tmp/mailcow-ha-payload",
		"--customize-hook=chroot \"$1\" env MCHA_TARGET=local bash /tmp/mailcow-ha-payload/provision/run.sh",
		"--customize-hook=rm -rf \"$1\"/tmp/mailcow-ha-payload",
		suite, root,
		fmt.Sprintf("deb %s %s %s", m.Debian.Mirror, suite, comps),
		fmt.Sprintf("deb %s %s-updates %s", m.Debian.Mirror, suite, comps),
	}
	if m.Debian.SecurityMirror != "" {
		args = append(args, fmt.Sprintf("deb %s %s-security %s", m.Debian.SecurityMirror, suite, comps))
	}
	cmd := exec.CommandContext(ctx, "mmdebstrap", args...)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(m.Local.SourceDateEpoch, 10))
	logf, err := os.Create(filepath.Join(filepath.Dir(root), "mmdebstrap.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	// The provisioning's own lines go to the log; everything goes to the log file.
	filter := &prefixFilter{w: o.Log, prefix: "provision: "}
	cmd.Stdout = io.MultiWriter(logf, filter)
	cmd.Stderr = io.MultiWriter(logf, filter)
	if err := cmd.Run(); err != nil {
		tailLog, _ := os.ReadFile(logf.Name())
		return fmt.Errorf("mmdebstrap: %w\n%s", err, tail.Lines(string(tailLog), 30))
	}
	return nil
}

// prefixFilter passes on the lines that start with prefix.
type prefixFilter struct {
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixFilter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		line := string(p.buf[:i+1])
		p.buf = p.buf[i+1:]
		if strings.HasPrefix(line, p.prefix) {
			io.WriteString(p.w, "  "+line)
		}
	}
	return len(b), nil
}

func run(cmd *exec.Cmd) error {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", cmd.Args[0], err, tail.Lines(string(out), 20))
	}
	return nil
}

// duBytes sums the sizes of the regular files below dir.
func duBytes(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}
