package api

// The peer API's routes of a rotation of the cluster secret (`mailcow-ha cluster rotate-secret`): a node is handed
// the next secret (sealed with the secret the asker signs with), switches to it, and forgets the one before. Each
// step names the secret by KeyID, so that a step repeated, or asked of a node already past it, changes nothing.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
)

// SecretState is which cluster secrets a node holds, by KeyID: the one it signs with, the one staged next, and the
// one before (accepted until the rotation ends).
type SecretState struct {
	Signing string `json:"signing"`
	Next    string `json:"next,omitempty"`
	Prev    string `json:"prev,omitempty"`
}

// SecretStageRequest hands a node the next secret, sealed with the asker's signing secret, and its KeyID.
type SecretStageRequest struct {
	ID     string `json:"id"`
	Sealed string `json:"sealed"`
}

// SecretStepRequest asks a node to switch to, or to finish the rotation to, the secret ID.
type SecretStepRequest struct {
	ID string `json:"id"`
}

// SecretAgent is what the rotation's routes need of an agent. Each step answers the node's state after it; an
// error says why the node refused or failed (the state then says where it stands).
type SecretAgent interface {
	SecretState() SecretState
	// StageSecret keeps next beside the node's secret and accepts it from now on.
	StageSecret(ctx context.Context, next []byte) (SecretState, error)
	// SwitchSecret makes the staged secret id the one the node signs with, and keeps accepting the one before.
	SwitchSecret(ctx context.Context, id string) (SecretState, error)
	// FinishSecret forgets the secret before id, which the node signs with.
	FinishSecret(ctx context.Context, id string) (SecretState, error)
}

// SecretAnswer is a step's outcome: the node's state, and why the node refused the step or failed it (a refusal is
// an answer, HTTP 200, like a demote's).
type SecretAnswer struct {
	State SecretState `json:"state"`
	Error string      `json:"error,omitempty"`
}

const secretAAD = "mailcow-ha next cluster secret v1"

// secretRoutes adds the rotation's routes to a peer API.
func secretRoutes(mux *http.ServeMux, keys *Keyring, a SecretAgent, auth authWrap) {
	answer := func(w http.ResponseWriter, st SecretState, err error) {
		ans := SecretAnswer{State: st}
		if err != nil {
			ans.Error = err.Error()
		}
		writeJSON(w, http.StatusOK, ans)
	}
	mux.HandleFunc("GET /peer/v1/secret", auth(func(w http.ResponseWriter, r *http.Request, _ []byte, _ string) {
		writeJSON(w, http.StatusOK, a.SecretState())
	}))
	mux.HandleFunc("POST /peer/v1/secret/stage", auth(func(w http.ResponseWriter, r *http.Request, body []byte, _ string) {
		var req SecretStageRequest
		if err := json.Unmarshal(body, &req); err != nil || req.ID == "" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		var next []byte
		for _, k := range keys.Accepted() {
			if pt, err := open(k, secretAAD, req.Sealed); err == nil {
				next = pt
				break
			}
		}
		if next == nil || KeyID(next) != req.ID {
			http.Error(w, "the next secret does not open with this node's secrets, or is not the one named", http.StatusBadRequest)
			return
		}
		st, err := a.StageSecret(r.Context(), next)
		answer(w, st, err)
	}))
	for _, step := range []struct {
		path string
		do   func(context.Context, string) (SecretState, error)
	}{{"POST /peer/v1/secret/switch", a.SwitchSecret}, {"POST /peer/v1/secret/finish", a.FinishSecret}} {
		mux.HandleFunc(step.path, auth(func(w http.ResponseWriter, r *http.Request, body []byte, _ string) {
			var req SecretStepRequest
			if err := json.Unmarshal(body, &req); err != nil || req.ID == "" {
				http.Error(w, "bad request", http.StatusBadRequest)
				return
			}
			st, err := step.do(r.Context(), req.ID)
			answer(w, st, err)
		}))
	}
}

// SecretState asks a peer which cluster secrets it holds.
func (c *PeerClient) SecretState(ctx context.Context, to Peer) (SecretState, error) {
	var s SecretState
	err := c.do(ctx, http.MethodGet, to, "/peer/v1/secret", nil, &s)
	return s, err
}

// StageSecret hands a peer the next secret, sealed with this client's signing secret.
func (c *PeerClient) StageSecret(ctx context.Context, to Peer, next []byte) (SecretState, error) {
	sealed, err := seal(c.Keys.Signing(), secretAAD, next)
	if err != nil {
		return SecretState{}, err
	}
	return c.secretStep(ctx, to, "/peer/v1/secret/stage", SecretStageRequest{ID: KeyID(next), Sealed: sealed})
}

// SwitchSecret asks a peer to sign with the staged secret id.
func (c *PeerClient) SwitchSecret(ctx context.Context, to Peer, id string) (SecretState, error) {
	return c.secretStep(ctx, to, "/peer/v1/secret/switch", SecretStepRequest{ID: id})
}

// FinishSecret asks a peer to forget the secret before id.
func (c *PeerClient) FinishSecret(ctx context.Context, to Peer, id string) (SecretState, error) {
	return c.secretStep(ctx, to, "/peer/v1/secret/finish", SecretStepRequest{ID: id})
}

func (c *PeerClient) secretStep(ctx context.Context, to Peer, path string, in any) (SecretState, error) {
	var a SecretAnswer
	if err := c.do(ctx, http.MethodPost, to, path, in, &a); err != nil {
		return a.State, err
	}
	if a.Error != "" {
		return a.State, errors.New(a.Error)
	}
	return a.State, nil
}
