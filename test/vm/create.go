package vm

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/mailcow-ha/mailcow-ha/hcloudsim"
	"github.com/mailcow-ha/mailcow-ha/provision"
)

// CreateCluster runs `cluster create` against the harness's simulator, as an operator runs it against Hetzner:
// hcloud-go over HTTP to the API on the private switch (the endpoint the nodes use too), with settings as the
// --config file, and --out under the harness's directory. Every server it makes boots with the one user-data it
// wrote (see backend.ServerCreated) before the call returns.
func (h *Harness) CreateCluster(ctx context.Context, s provision.Spec, settings string, log io.Writer) (provision.Result, *provision.Secrets, error) {
	path := filepath.Join(h.Dir, "settings.toml")
	if err := os.WriteFile(path, []byte(settings), 0o600); err != nil {
		return provision.Result{}, nil, err
	}
	extra, err := provision.ReadSettings(path)
	if err != nil {
		return provision.Result{}, nil, err
	}
	secrets := &provision.Secrets{Dir: filepath.Join(h.Dir, "cluster")}
	endpoint := "http://" + SimAddr + "/v1"
	c := hc.NewClient(hc.WithToken(hcloudsim.DemoToken), hc.WithEndpoint(endpoint),
		hc.WithHTTPClient(&http.Client{Timeout: time.Minute, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return h.dial(addr, 5*time.Second) }}}),
		hc.WithPollOpts(hc.PollOpts{BackoffFunc: hc.ConstantBackoff(200 * time.Millisecond)}))
	res, err := provision.Create(ctx, c, s, provision.Options{Secrets: secrets, Endpoint: endpoint, Token: hcloudsim.DemoToken,
		Settings: extra, Log: log})
	if err != nil {
		return res, secrets, fmt.Errorf("cluster create: %w", err)
	}
	if err := h.BootErr(); err != nil {
		return res, secrets, err
	}
	return res, secrets, nil
}

// VolumeServer is the server the API has a Volume attached to (0: none).
func (h *Harness) VolumeServer(id int64) int64 {
	for _, v := range h.Sim.State().Volumes {
		if v.ID == id {
			return v.Server
		}
	}
	return 0
}
