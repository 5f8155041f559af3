package hcloud

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/metadata"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
)

// Metadata reads the server's metadata service. BaseURL is hcloud.metadata_url, such as
// http://169.254.169.254/hetzner/v1; hcloud-go's metadata client serves the /metadata paths, and UserData reads
// /userdata, which that client does not offer.
type Metadata struct {
	base string
	http *http.Client
	md   *metadata.Client
}

// NewMetadata returns a metadata reader for baseURL.
func NewMetadata(baseURL string, client *http.Client) *Metadata {
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	base := strings.TrimRight(baseURL, "/")
	return &Metadata{
		base: base,
		http: client,
		md:   metadata.NewClient(metadata.WithEndpoint(base+"/metadata"), metadata.WithHTTPClient(client)),
	}
}

// InstanceID is the server's id.
func (m *Metadata) InstanceID(ctx context.Context) (int64, error) {
	id, err := m.md.InstanceIDWithContext(ctx)
	if err != nil {
		return 0, fmt.Errorf("metadata instance-id: %w", err)
	}
	return id, nil
}

// Hostname is the server's name.
func (m *Metadata) Hostname(ctx context.Context) (string, error) {
	h, err := m.md.HostnameWithContext(ctx)
	if err != nil {
		return "", fmt.Errorf("metadata hostname: %w", err)
	}
	return h, nil
}

// PrivateNetwork is one of the server's private network attachments.
type PrivateNetwork struct {
	IP        string
	MAC       string
	NetworkID int64
	Network   string // the network's range
	Subnet    string
	Gateway   string
}

// PrivateNetworks lists the server's private network attachments.
func (m *Metadata) PrivateNetworks(ctx context.Context) ([]PrivateNetwork, error) {
	raw, err := m.md.PrivateNetworksWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("metadata private-networks: %w", err)
	}
	return parsePrivateNetworks(raw)
}

// PrivateNetworkByMAC returns the attachment whose interface has the given MAC address.
func (m *Metadata) PrivateNetworkByMAC(ctx context.Context, mac string) (PrivateNetwork, bool, error) {
	nets, err := m.PrivateNetworks(ctx)
	if err != nil {
		return PrivateNetwork{}, false, err
	}
	for _, n := range nets {
		if strings.EqualFold(n.MAC, mac) {
			return n, true, nil
		}
	}
	return PrivateNetwork{}, false, nil
}

// UserData returns the raw user-data, retried until deadline.
func (m *Metadata) UserData(ctx context.Context, deadline time.Duration) ([]byte, error) {
	return config.FetchUserData(ctx, m.http, m.base, deadline)
}

// parsePrivateNetworks reads the YAML list the metadata service returns: items start with "- ", then
// "key: value" lines. Only the flat keys that Hetzner documents are read.
func parsePrivateNetworks(raw string) ([]PrivateNetwork, error) {
	var out []PrivateNetwork
	for n, line := range strings.Split(raw, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || t == "[]" {
			continue
		}
		if rest, ok := strings.CutPrefix(t, "- "); ok {
			out = append(out, PrivateNetwork{})
			t = rest
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("metadata private-networks: line %d: %q before the first item", n+1, t)
		}
		k, v, ok := strings.Cut(t, ":")
		if !ok {
			return nil, fmt.Errorf("metadata private-networks: line %d: %q is not key: value", n+1, t)
		}
		v = strings.Trim(strings.TrimSpace(v), `"'`)
		p := &out[len(out)-1]
		switch strings.TrimSpace(k) {
		case "ip":
			p.IP = v
		case "mac_address":
			p.MAC = v
		case "network_id":
			id, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("metadata private-networks: line %d: network_id %q", n+1, v)
			}
			p.NetworkID = id
		case "network":
			p.Network = v
		case "subnet":
			p.Subnet = v
		case "gateway":
			p.Gateway = v
		}
	}
	return out, nil
}
