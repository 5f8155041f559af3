package hcloud

// This file reads the project beyond the failover's own resources: the newest appliance snapshot, the Volumes of a
// server (galera.data_volume), and the cluster's servers by label (membership discovery).

import (
	"context"
	"fmt"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"
)

// Image is a snapshot.
type Image struct {
	ID          int64
	Description string
	Created     time.Time
	Labels      map[string]string
}

// AppSelector selects what belongs to mailcow-ha: its snapshots, and every resource of a cluster.
const AppSelector = "app=mailcow-ha"

// LatestImage returns the newest snapshot whose labels match selector (such as "app=mailcow-ha").
func (c *Client) LatestImage(ctx context.Context, selector string) (Image, error) {
	var img Image
	err := c.call(ctx, "latest_image", func(ctx context.Context) error {
		list, _, err := c.hc().Image.List(ctx, hc.ImageListOpts{
			ListOpts: hc.ListOpts{LabelSelector: selector, PerPage: 1},
			Type:     []hc.ImageType{hc.ImageTypeSnapshot},
			Sort:     []string{"created:desc"},
		})
		if err != nil {
			return err
		}
		if len(list) == 0 {
			return &Error{Kind: Fatal, Code: string(hc.ErrorCodeNotFound), Err: fmt.Errorf("no snapshot matches %q", selector)}
		}
		i := list[0]
		img = Image{ID: i.ID, Description: i.Description, Created: i.Created, Labels: i.Labels}
		return nil
	})
	return img, err
}

// VolumesOf lists the Volumes attached to the server.
func (c *Client) VolumesOf(ctx context.Context, server int64) ([]VolumeInfo, error) {
	var out []VolumeInfo
	err := c.call(ctx, "server_volumes", func(ctx context.Context) error {
		s, _, err := c.hc().Server.GetByID(ctx, server)
		if err != nil {
			return err
		}
		if s == nil {
			return notFound("server", server)
		}
		out = out[:0]
		for _, ref := range s.Volumes {
			v, err := c.getVolume(ctx, ref.ID)
			if err != nil {
				return err
			}
			out = append(out, volumeInfo(v))
		}
		return nil
	})
	return out, err
}

// ServerInfo is what membership discovery needs to know of a server.
type ServerInfo struct {
	ID     int64
	Name   string
	Labels map[string]string
	// PrivateIPs maps a private network's id to the server's address in it.
	PrivateIPs map[int64]string
}

// Servers lists the servers whose labels match selector (such as "app=mailcow-ha,cluster=mail"), every page.
func (c *Client) Servers(ctx context.Context, selector string) ([]ServerInfo, error) {
	var out []ServerInfo
	err := c.call(ctx, "list_servers", func(ctx context.Context) error {
		list, err := c.hc().Server.AllWithOpts(ctx, hc.ServerListOpts{ListOpts: hc.ListOpts{LabelSelector: selector}})
		if err != nil {
			return err
		}
		out = out[:0]
		for _, s := range list {
			si := ServerInfo{ID: s.ID, Name: s.Name, Labels: s.Labels, PrivateIPs: map[int64]string{}}
			for _, p := range s.PrivateNet {
				if p.Network != nil && p.IP != nil {
					si.PrivateIPs[p.Network.ID] = p.IP.String()
				}
			}
			out = append(out, si)
		}
		return nil
	})
	return out, err
}
