package deploy

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/image"
)

// SaveImage's tarball is deterministic, and the real Docker Engine loads it as the stub image: the tag, the
// entrypoint, one layer.
func TestSaveImage(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "mailcow-stub")
	if err := GoBuild(context.Background(), bin); err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	if err := SaveImage(&a, bin, "mailcow-ha/mailcow-stub:savetest"); err != nil {
		t.Fatal(err)
	}
	if err := SaveImage(&b, bin, "mailcow-ha/mailcow-stub:savetest"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two saves of the same binary differ: the image build's cache would never hit")
	}
	if _, err := os.Stat("/var/run/docker.sock"); err != nil && os.Getenv("DOCKER_HOST") == "" {
		t.Skip("no Docker Engine here (make test starts dockerd)")
	}
	c, err := Connect("")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Ping(ctx); err != nil {
		t.Skipf("no Docker Engine answers: %v (make test starts dockerd)", err)
	}
	resp, err := c.ImageLoad(ctx, bytes.NewReader(a.Bytes()))
	if err != nil {
		t.Fatalf("docker load: %v", err)
	}
	var out bytes.Buffer
	out.ReadFrom(resp.Body)
	resp.Body.Close()
	if !strings.Contains(out.String(), "mailcow-ha/mailcow-stub:savetest") {
		t.Fatalf("docker load said %s", out.String())
	}
	defer c.ImageRemove(ctx, "mailcow-ha/mailcow-stub:savetest", image.RemoveOptions{Force: true})
	ins, err := c.ImageInspect(ctx, "mailcow-ha/mailcow-stub:savetest")
	if err != nil {
		t.Fatal(err)
	}
	if ep := ins.Config.Entrypoint; len(ep) != 1 || ep[0] != "/mailcow-stub" || len(ins.RootFS.Layers) != 1 {
		t.Errorf("loaded image: entrypoint %v, layers %v", ep, ins.RootFS.Layers)
	}
	// And it runs: the stub prints its usage when given no role.
	if _, err := exec.LookPath("docker"); err == nil {
		o, _ := exec.Command("docker", "run", "--rm", "mailcow-ha/mailcow-stub:savetest", "--help").CombinedOutput()
		if len(o) == 0 {
			t.Errorf("docker run of the loaded image printed nothing")
		}
	}
}
