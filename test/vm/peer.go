package vm

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/galera"
)

// bootingPeer answers the real peer API (agent/api, HMAC-verified with the cluster secret) as a member that has
// booted and never run Galera: it is how the single-VM scenario gives its one VM the two peers that a first
// bootstrap waits for (a bootstrap node never starts a cluster while a peer is silent). It never claims a role,
// a Primary component or anything to demote.
type bootingPeer struct{ name string }

func (p bootingPeer) State() api.PeerState {
	return api.PeerState{Node: p.name, Role: "booting", Reason: "vm test: a booted peer without Galera"}
}
func (bootingPeer) Demote(context.Context, int64) error { return nil }
func (bootingPeer) Switchover(string, time.Time)        {}
func (bootingPeer) Maintenance(bool)                    {}
func (p bootingPeer) GaleraReport(context.Context) galera.Report {
	return galera.Report{Node: p.name, Answered: true, Pos: galera.Position{UUID: galera.ZeroUUID, Seqno: -1}}
}

// ServePeers serves bootingPeer on the private addresses of the VMs that are not booted, with the secret and
// node names of the cluster; the servers end with the harness.
func (h *Harness) ServePeers(secret string) error {
	nodes := map[string]bool{}
	for _, v := range h.VMs {
		nodes[v.Name] = true
	}
	for _, v := range h.VMs {
		if v.Running() {
			continue
		}
		if err := h.NS.IP("addr", "add", v.PrivIP+"/32", "dev", "br0"); err != nil {
			return err
		}
		var ln net.Listener
		if err := h.NS.Do(func() error {
			var err error
			ln, err = net.Listen("tcp", net.JoinHostPort(v.PrivIP, "7481"))
			return err
		}); err != nil {
			return err
		}
		srv := &http.Server{Handler: api.PeerHandler(&api.Verifier{Secret: []byte(secret), Nodes: nodes}, bootingPeer{v.Name}, h.Log),
			ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		h.mu.Lock()
		h.extra = append(h.extra, srv)
		h.mu.Unlock()
	}
	return nil
}
