package daemon

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/galera"
)

// statePeer is a peer agent that states what the test sets.
type statePeer struct{ st api.PeerState }

func (p *statePeer) State() api.PeerState                       { return p.st }
func (p *statePeer) Demote(context.Context, int64) error        { return nil }
func (p *statePeer) Switchover(string, time.Time)               {}
func (p *statePeer) Maintenance(bool)                           {}
func (p *statePeer) GaleraReport(context.Context) galera.Report { return galera.Report{} }

// A restart that a node takes by itself waits for the others: every one answering, Synced, nothing pending.
func TestMembersSettled(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	nodes := map[string]bool{"mx1": true, "mx2": true, "mx3": true}
	var peers []api.Peer
	var states []*statePeer
	for _, name := range []string{"mx2", "mx3"} {
		p := &statePeer{st: api.PeerState{Node: name, GaleraOK: true, Galera: "Primary Synced size=3"}}
		srv := httptest.NewServer(api.PeerHandler(&api.Verifier{Keys: api.NewKeyring(secret), Self: name, Nodes: nodes}, p, slog.New(slog.DiscardHandler)))
		t.Cleanup(srv.Close)
		peers, states = append(peers, api.Peer{Name: name, URL: srv.URL}), append(states, p)
	}
	client := &api.PeerClient{Keys: api.NewKeyring(secret), Node: "mx1"}
	ctx := context.Background()
	if why := membersSettled(ctx, client, peers); why != "" {
		t.Fatalf("a settled cluster: %q", why)
	}
	states[1].st.ConfigPending = true
	if why := membersSettled(ctx, client, peers); !strings.Contains(why, "mx3 waits for its own restart") {
		t.Errorf("a member with a restart pending: %q", why)
	}
	states[1].st.ConfigPending, states[0].st.GaleraOK, states[0].st.Galera = false, false, "Joined"
	if why := membersSettled(ctx, client, peers); !strings.Contains(why, "mx2: Galera Joined") {
		t.Errorf("a member not Synced: %q", why)
	}
	states[0].st.GaleraOK = true
	peers[1].URL = "http://127.0.0.1:1"
	if why := membersSettled(ctx, client, peers); !strings.Contains(why, "mx3 does not answer") {
		t.Errorf("a member away: %q", why)
	}
}
