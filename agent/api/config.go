package api

// The cluster's configuration over the peer API: config apply hands a revision to each node, a node that was down
// fetches the newest from a peer, and config apply restarts an agent when a change needs it. The document may
// carry secrets (hcloud.token): requests and answers are signed like every peer request, and the document itself
// travels sealed (AES-256-GCM, with a key derived from the cluster secret), so that nothing on the private network
// reads it.

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// ConfigDoc is a cluster configuration in transit: its revision and the sealed TOML.
type ConfigDoc struct {
	Revision int64  `json:"revision"`
	Sealed   string `json:"sealed"`
}

// ConfigAnswer is what a node did with a cluster configuration.
type ConfigAnswer struct {
	Node     string `json:"node"`
	Revision int64  `json:"revision"` // the revision the node holds afterwards
	// Outcome: "live" (applied by a reload), "restart" (kept; the agent must restart to run it), "unchanged"
	// (it held this revision already), or "refused" (Error says why; nothing changed).
	Outcome string   `json:"outcome"`
	Keys    []string `json:"keys,omitempty"` // the keys that changed
	Error   string   `json:"error,omitempty"`
}

// Outcomes of ConfigAnswer.
const (
	ConfigLive      = "live"
	ConfigRestart   = "restart"
	ConfigUnchanged = "unchanged"
	ConfigRefused   = "refused"
)

func configKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("mailcow-ha cluster configuration v1"))
	return m.Sum(nil)
}

// Seal encrypts a cluster configuration's text with the cluster secret.
func Seal(secret []byte, revision int64, text string) (ConfigDoc, error) {
	sealed, err := seal(secret, fmt.Sprintf("revision %d", revision), []byte(text))
	return ConfigDoc{Revision: revision, Sealed: sealed}, err
}

// Open decrypts a sealed cluster configuration with one of keys (during a rotation, the peer may seal with the
// secret before or after it); a document sealed with another secret, or for another revision, is refused.
func (d ConfigDoc) Open(keys ...[]byte) (string, error) {
	for _, k := range keys {
		if pt, err := open(k, fmt.Sprintf("revision %d", d.Revision), d.Sealed); err == nil {
			return string(pt), nil
		}
	}
	return "", errors.New("cluster configuration: the seal does not open with this cluster's secret")
}

// seal encrypts pt with a key derived from the cluster secret (AES-256-GCM), bound to aad: base64(nonce|ct).
func seal(secret []byte, aad string, pt []byte) (string, error) {
	gcm, err := configAEAD(secret)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(gcm.Seal(nonce, nonce, pt, []byte(aad))), nil
}

// open is seal's reverse; it fails for another secret, another aad or a changed text.
func open(secret []byte, aad, sealed string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return nil, errors.New("not a sealed document")
	}
	gcm, err := configAEAD(secret)
	if err != nil {
		return nil, err
	}
	if len(b) < gcm.NonceSize() {
		return nil, errors.New("not a sealed document")
	}
	return gcm.Open(nil, b[:gcm.NonceSize()], b[gcm.NonceSize():], []byte(aad))
}

func configAEAD(secret []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(configKey(secret))
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// ConfigAgent is what the peer API needs from the agent for the cluster's configuration.
type ConfigAgent interface {
	// ClusterConfig is the revision and text this node runs (revision 0: none).
	ClusterConfig() (int64, string)
	// ApplyConfig checks a revision against this node's own configuration, keeps it and applies it live where it
	// can.
	ApplyConfig(ctx context.Context, revision int64, text string) ConfigAnswer
	// Restart ends the agent so that its supervisor starts it again (with the kept configuration); a MASTER
	// refuses.
	Restart() error
}

// configRoutes adds the cluster configuration's routes to a peer API.
func configRoutes(mux *http.ServeMux, keys *Keyring, a ConfigAgent, auth authWrap) {
	mux.HandleFunc("GET /peer/v1/config", auth(func(w http.ResponseWriter, r *http.Request, _ []byte, _ string) {
		rev, text := a.ClusterConfig()
		d, err := Seal(keys.Signing(), rev, text)
		if err != nil {
			http.Error(w, "seal", http.StatusInternalServerError)
			return
		}
		writeJSON(w, http.StatusOK, d)
	}))
	mux.HandleFunc("POST /peer/v1/config", auth(func(w http.ResponseWriter, r *http.Request, body []byte, _ string) {
		var d ConfigDoc
		if err := json.Unmarshal(body, &d); err != nil || d.Revision <= 0 {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		text, err := d.Open(keys.Accepted()...)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusOK, a.ApplyConfig(r.Context(), d.Revision, text))
	}))
	mux.HandleFunc("POST /peer/v1/restart", auth(func(w http.ResponseWriter, r *http.Request, _ []byte, node string) {
		if err := a.Restart(); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
}

// ClusterConfig asks a peer for the cluster configuration it runs.
func (c *PeerClient) ClusterConfig(ctx context.Context, to Peer) (int64, string, error) {
	var d ConfigDoc
	if err := c.do(ctx, http.MethodGet, to, "/peer/v1/config", nil, &d); err != nil {
		return 0, "", err
	}
	if d.Revision == 0 {
		return 0, "", nil
	}
	text, err := d.Open(c.Keys.Accepted()...)
	return d.Revision, text, err
}

// ApplyConfig hands a peer a revision of the cluster configuration.
func (c *PeerClient) ApplyConfig(ctx context.Context, to Peer, revision int64, text string) (ConfigAnswer, error) {
	d, err := Seal(c.Keys.Signing(), revision, text)
	if err != nil {
		return ConfigAnswer{}, err
	}
	var a ConfigAnswer
	err = c.do(ctx, http.MethodPost, to, "/peer/v1/config", d, &a)
	return a, err
}

// Restart asks a peer's agent to restart.
func (c *PeerClient) Restart(ctx context.Context, to Peer) error {
	return c.do(ctx, http.MethodPost, to, "/peer/v1/restart", struct{}{}, nil)
}
