package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mailcow-ha/mailcow-ha/agent/release"
)

// releaseAgent is a peer agent that stages and switches mailcow releases.
type releaseAgent struct {
	fakeAgent
	staged, current release.Release
}

func (r *releaseAgent) ReleaseState() ReleaseState {
	return ReleaseState{Current: r.current, Staged: r.staged}
}
func (r *releaseAgent) StageRelease(tag, commit string) error {
	if tag == "busy" {
		return errors.New("staging other is under way")
	}
	r.staged = release.Release{Tag: tag, Commit: commit}
	return nil
}
func (r *releaseAgent) SwitchRelease(_ context.Context, tag string) SwitchAnswer {
	if r.staged.Tag != tag {
		return SwitchAnswer{Before: r.current, Now: r.current, Error: tag + " is not staged here"}
	}
	before := r.current
	r.current = r.staged
	return SwitchAnswer{Before: before, Now: r.current, Started: true}
}

// The release routes answer signed requests only, and carry the stage, the state and the switch.
func TestReleaseOverPeerAPI(t *testing.T) {
	a := &releaseAgent{current: release.Release{Tag: "2026-07a", Commit: "c1"}}
	v := &Verifier{Keys: NewKeyring(secret), Self: "mx2", Nodes: map[string]bool{"mx1": true, "mx2": true}}
	srv := httptest.NewServer(PeerHandler(v, a, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	c := &PeerClient{Keys: NewKeyring(secret), Node: "mx1"}
	ctx := context.Background()
	mx2 := Peer{Name: "mx2", URL: srv.URL}
	if err := c.StageRelease(ctx, mx2, "2026-09", "c2"); err != nil || a.staged.Tag != "2026-09" {
		t.Fatalf("stage: %v (%+v)", err, a.staged)
	}
	if err := c.StageRelease(ctx, mx2, "busy", ""); err == nil || !strings.Contains(err.Error(), "HTTP 409") {
		t.Errorf("a stage the agent cannot start: %v, want HTTP 409", err)
	}
	st, err := c.MailcowRelease(ctx, mx2)
	if err != nil || st.Staged.Tag != "2026-09" || st.Current.Tag != "2026-07a" {
		t.Fatalf("state: %+v %v", st, err)
	}
	ans, err := c.SwitchRelease(ctx, mx2, "2026-09")
	if err != nil || !ans.Started || ans.Before.Tag != "2026-07a" || ans.Now.Commit != "c2" {
		t.Fatalf("switch: %+v %v", ans, err)
	}
	// Unsigned, or signed with another secret: refused, nothing staged.
	resp, err := http.Post(srv.URL+"/peer/v1/mailcow/stage", "application/json", strings.NewReader(`{"tag":"evil"}`))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("an unsigned stage: %v %v", resp, err)
	}
	other := &PeerClient{Keys: NewKeyring([]byte("another secret, 32 characters...")), Node: "mx1"}
	if err := other.StageRelease(ctx, mx2, "evil", ""); err == nil || a.staged.Tag == "evil" {
		t.Errorf("a stage signed with another secret: %v, staged %+v", err, a.staged)
	}
}
