package stack

import (
	"context"
	"fmt"
	"sort"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// ImageInspector is the part of the Docker client that tells whether the Engine holds an image.
type ImageInspector interface {
	ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
}

// MissingImages lists the images that the compose file in dir names and the Engine does not hold (mailcow update
// checks a staged release with it before any node switches to it).
func MissingImages(ctx context.Context, d ImageInspector, dir string) ([]string, error) {
	c, err := LoadCompose(ctx, dir)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var missing []string
	for _, ref := range c.Images {
		if ref == "" || seen[ref] {
			continue
		}
		seen[ref] = true
		if _, err := d.ImageInspect(ctx, ref); err != nil {
			if cerrdefs.IsNotFound(err) {
				missing = append(missing, ref)
				continue
			}
			return nil, fmt.Errorf("docker: %s: %w", ref, err)
		}
	}
	sort.Strings(missing)
	return missing, nil
}
