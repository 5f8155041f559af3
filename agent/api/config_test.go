package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// configAgent is a peer agent that holds a cluster configuration.
type configAgent struct {
	fakeAgent
	cmu       sync.Mutex
	rev       int64
	text      string
	restarted int
	master    bool
}

func (c *configAgent) ClusterConfig() (int64, string) {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	return c.rev, c.text
}
func (c *configAgent) ApplyConfig(_ context.Context, rev int64, text string) ConfigAnswer {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	if rev <= c.rev {
		return ConfigAnswer{Node: "mx2", Revision: c.rev, Outcome: ConfigRefused, Error: "older"}
	}
	c.rev, c.text = rev, text
	return ConfigAnswer{Node: "mx2", Revision: rev, Outcome: ConfigLive, Keys: []string{"failover.check_grace"}}
}
func (c *configAgent) Restart() error {
	if c.master {
		return errors.New("mx2 is master: hand MASTER over first")
	}
	c.restarted++
	return nil
}

// The cluster configuration travels sealed: the peer gets the text, a wrong secret opens nothing, and a seal does
// not move to another revision.
func TestConfigOverPeerAPI(t *testing.T) {
	a := &configAgent{}
	v := &Verifier{Keys: NewKeyring(secret), Self: "mx2", Nodes: map[string]bool{"mx1": true, "mx2": true}}
	srv := httptest.NewServer(PeerHandler(v, a, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	c := &PeerClient{Keys: NewKeyring(secret), Node: "mx1"}
	ctx := context.Background()
	mx2 := Peer{Name: "mx2", URL: srv.URL}
	text := "[hcloud]\ntoken = \"secret-token\"\n"
	ans, err := c.ApplyConfig(ctx, mx2, 3, text)
	if err != nil || ans.Outcome != ConfigLive || ans.Revision != 3 || a.text != text {
		t.Fatalf("apply: %+v %v (agent holds %q)", ans, err, a.text)
	}
	if ans, err := c.ApplyConfig(ctx, mx2, 2, text); err != nil || ans.Outcome != ConfigRefused {
		t.Fatalf("older revision: %+v %v", ans, err)
	}
	rev, got, err := c.ClusterConfig(ctx, mx2)
	if err != nil || rev != 3 || got != text {
		t.Fatalf("fetch: %d %q %v", rev, got, err)
	}
	if err := c.Restart(ctx, mx2); err != nil || a.restarted != 1 {
		t.Fatalf("restart: %v (%d)", err, a.restarted)
	}
	a.master = true
	if err := c.Restart(ctx, mx2); err == nil || !strings.Contains(err.Error(), "hand MASTER over first") {
		t.Fatalf("a MASTER's restart: %v", err)
	}

	d, err := Seal(secret, 3, text)
	if err != nil || strings.Contains(d.Sealed, "secret-token") {
		t.Fatalf("seal: %+v %v", d, err)
	}
	if _, err := d.Open([]byte("another secret, 32 characters...")); err == nil {
		t.Error("a seal opened with another secret")
	}
	d.Revision = 4
	if _, err := d.Open(secret); err == nil {
		t.Error("a seal moved to another revision opened")
	}
}
