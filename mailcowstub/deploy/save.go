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
	"strings"
	"time"
)

// SaveImage writes the stub image as a `docker save` tarball (the format `docker load` reads) without a Docker
// Engine: one FROM-scratch layer holding the static binary at /mailcow-stub, the same image BuildImage builds.
// The output depends only on the binary and the tag, so an image build that carries it stays cacheable.
func SaveImage(w io.Writer, binary, tag string) error {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return fmt.Errorf("stub image: %w", err)
	}
	epoch := time.Unix(0, 0).UTC()
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	if err := lw.WriteHeader(&tar.Header{Name: "mailcow-stub", Mode: 0o755, Size: int64(len(bin)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return err
	}
	if _, err := lw.Write(bin); err != nil {
		return err
	}
	if err := lw.Close(); err != nil {
		return err
	}
	sum := sha256.Sum256(layer.Bytes())
	layerID := hex.EncodeToString(sum[:])
	cfg, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      epoch.Format(time.RFC3339),
		"config":       map[string]any{"Entrypoint": []string{"/mailcow-stub"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + layerID}},
		"history":      []map[string]any{{"created": epoch.Format(time.RFC3339), "created_by": "mailcow-ha: COPY mailcow-stub /mailcow-stub"}},
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
		data []byte
	}{
		{layerID + "/VERSION", []byte("1.0")},
		{layerID + "/json", []byte(`{"id":"` + layerID + `"}`)},
		{layerID + "/layer.tar", layer.Bytes()},
		{cfgName, cfg},
		{"manifest.json", manifest},
		{"repositories", repos},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: epoch}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	return tw.Close()
}
