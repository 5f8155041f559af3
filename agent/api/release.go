package api

// The peer API's mailcow release routes (`mailcow-ha mailcow update`): a node stages a release while it serves, and
// switches to a staged one when asked.

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/mailcow-ha/mailcow-ha/agent/release"
)

// ReleaseState is the mailcow release a node runs, the one staged beside it, and the stage under way or failed.
type ReleaseState struct {
	Current release.Release `json:"current"`
	Staged  release.Release `json:"staged"`
	Staging string          `json:"staging,omitempty"` // the tag being staged
	Error   string          `json:"error,omitempty"`   // why the last stage failed
}

// StageRequest asks a node to stage a release: Tag from mailcow.repo, which must name Commit when it is set.
type StageRequest struct {
	Tag    string `json:"tag"`
	Commit string `json:"commit,omitempty"`
}

// SwitchRequest asks a node to run the staged release Tag.
type SwitchRequest struct {
	Tag string `json:"tag"`
}

// SwitchAnswer says what a switch did: the release before and after, and whether mailcow was started on it (a
// MASTER); Error says why it failed (a MASTER then runs Before again).
type SwitchAnswer struct {
	Before  release.Release `json:"before"`
	Now     release.Release `json:"now"`
	Started bool            `json:"started"`
	Error   string          `json:"error,omitempty"`
}

// ReleaseAgent is what the release routes need of an agent.
type ReleaseAgent interface {
	ReleaseState() ReleaseState
	// StageRelease starts staging a release in the background; an error says why it cannot start.
	StageRelease(tag, commit string) error
	// SwitchRelease runs the staged release: a MASTER lays it over its tree and restarts what changed, in
	// maintenance; another node only lays it over its tree.
	SwitchRelease(ctx context.Context, tag string) SwitchAnswer
}

// releaseRoutes adds the mailcow release's routes to a peer API.
func releaseRoutes(mux *http.ServeMux, a ReleaseAgent, auth authWrap) {
	mux.HandleFunc("GET /peer/v1/mailcow/release", auth(func(w http.ResponseWriter, r *http.Request, _ []byte, _ string) {
		writeJSON(w, http.StatusOK, a.ReleaseState())
	}))
	mux.HandleFunc("POST /peer/v1/mailcow/stage", auth(func(w http.ResponseWriter, r *http.Request, body []byte, _ string) {
		var req StageRequest
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if err := a.StageRelease(req.Tag, req.Commit); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	mux.HandleFunc("POST /peer/v1/mailcow/switch", auth(func(w http.ResponseWriter, r *http.Request, body []byte, _ string) {
		var req SwitchRequest
		if err := json.Unmarshal(body, &req); err != nil || req.Tag == "" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusOK, a.SwitchRelease(r.Context(), req.Tag))
	}))
}

// MailcowRelease asks a peer which mailcow release it runs and stages.
func (c *PeerClient) MailcowRelease(ctx context.Context, to Peer) (ReleaseState, error) {
	var s ReleaseState
	err := c.do(ctx, http.MethodGet, to, "/peer/v1/mailcow/release", nil, &s)
	return s, err
}

// StageRelease asks a peer to stage a release (it answers at once; MailcowRelease follows the stage).
func (c *PeerClient) StageRelease(ctx context.Context, to Peer, tag, commit string) error {
	return c.do(ctx, http.MethodPost, to, "/peer/v1/mailcow/stage", StageRequest{Tag: tag, Commit: commit}, nil)
}

// SwitchRelease asks a peer to run its staged release tag.
func (c *PeerClient) SwitchRelease(ctx context.Context, to Peer, tag string) (SwitchAnswer, error) {
	var a SwitchAnswer
	err := c.do(ctx, http.MethodPost, to, "/peer/v1/mailcow/switch", SwitchRequest{Tag: tag}, &a)
	return a, err
}
