package deploy

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailcow-ha/mailcow-ha/mailservers"
)

// SaveImage writes the stub image as a `docker save` tarball (the format `docker load` reads) without a Docker
// Engine: one FROM-scratch layer holding the static binary at /mailcow-stub, the same image BuildImage builds.
// The output depends only on the binary and the tag, so an image build that carries it stays cacheable.
func SaveImage(w io.Writer, binary, tag string) error {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return fmt.Errorf("stub image: %w", err)
	}
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	if err := lw.WriteHeader(&tar.Header{Name: "mailcow-stub", Mode: 0o755, Size: int64(len(bin)), ModTime: time.Unix(0, 0).UTC(), Format: tar.FormatPAX}); err != nil {
		return err
	}
	if _, err := lw.Write(bin); err != nil {
		return err
	}
	if err := lw.Close(); err != nil {
		return err
	}
	return SaveLayer(w, bytes.NewReader(layer.Bytes()), tag, []string{"/mailcow-stub"}, "mailcow-ha: COPY mailcow-stub /mailcow-stub")
}

// SaveLayer writes a one-layer image as a `docker save` tarball: layer is the layer's uncompressed tar (a root file
// system), entrypoint the image's entry point, createdBy its history line. The layer is read twice (its digest
// names it), and the output depends only on the arguments.
func SaveLayer(w io.Writer, layer io.ReadSeeker, tag string, entrypoint []string, createdBy string) error {
	h := sha256.New()
	size, err := io.Copy(h, layer)
	if err != nil {
		return fmt.Errorf("image layer: %w", err)
	}
	if _, err := layer.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("image layer: %w", err)
	}
	epoch := time.Unix(0, 0).UTC()
	layerID := hex.EncodeToString(h.Sum(nil))
	cfg, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      epoch.Format(time.RFC3339),
		"config":       map[string]any{"Entrypoint": entrypoint},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + layerID}},
		"history":      []map[string]any{{"created": epoch.Format(time.RFC3339), "created_by": createdBy}},
	})
	if err != nil {
		return err
	}
	cs := sha256.Sum256(cfg)
	cfgName := hex.EncodeToString(cs[:]) + ".json"
	repo, ref, ok := strings.Cut(tag, ":")
	if !ok {
		ref = "latest"
	}
	manifest, err := json.Marshal([]map[string]any{{"Config": cfgName, "RepoTags": []string{repo + ":" + ref}, "Layers": []string{layerID + "/layer.tar"}}})
	if err != nil {
		return err
	}
	repos, err := json.Marshal(map[string]map[string]string{repo: {ref: layerID}})
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	for _, f := range []struct {
		name string
		data io.Reader
		size int64
	}{
		{layerID + "/VERSION", strings.NewReader("1.0"), 3},
		{layerID + "/json", strings.NewReader(`{"id":"` + layerID + `"}`), int64(len(layerID) + 9)},
		{layerID + "/layer.tar", layer, size},
		{cfgName, bytes.NewReader(cfg), int64(len(cfg))},
		{"manifest.json", bytes.NewReader(manifest), int64(len(manifest))},
		{"repositories", bytes.NewReader(repos), int64(len(repos))},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: f.size, ModTime: epoch}); err != nil {
			return err
		}
		if n, err := io.Copy(tw, f.data); err != nil {
			return err
		} else if n != f.size {
			return fmt.Errorf("image layer: %s: %d bytes, want %d (changed while saved?)", f.name, n, f.size)
		}
	}
	return tw.Close()
}

// SaveStub writes the stub image (Image) from the mailcow-stub binary: an imagebuild.Savers' Stub.
func SaveStub(w io.Writer, binary string) error { return SaveImage(w, binary, Image) }

// SaveMailServers writes the mail servers' image from its root file system tarball (mailservers.RootFS, named
// <hash>.tar), tagged mailservers.Repository:<hash> with the image's entry point: an imagebuild.Savers' MailServers.
func SaveMailServers(w io.Writer, rootfs string) error {
	hash := strings.TrimSuffix(filepath.Base(rootfs), ".tar")
	if len(hash) != 16 || strings.Trim(hash, "0123456789abcdef") != "" {
		return fmt.Errorf("mail servers image: %s is not named <hash>.tar as mailservers.RootFS names it", rootfs)
	}
	f, err := os.Open(rootfs)
	if err != nil {
		return fmt.Errorf("mail servers image: %w", err)
	}
	defer f.Close()
	return SaveLayer(w, f, mailservers.Repository+":"+hash, []string{mailservers.EntryPoint}, "mailcow-ha: mmdebstrap (mailservers "+hash+")")
}
