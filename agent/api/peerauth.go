// Package api serves the agent's HTTP: the peer API that the nodes use among themselves (requests and answers
// authenticated with the cluster secret), the public health, role and metrics endpoints, and the servers' limits.
package api

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Peer API authentication. Every request carries the sender's node name, the receiver's node name, a Unix
// timestamp, a random nonce and an HMAC-SHA256 over all of them, the method, the path and the body's hash, keyed
// with the cluster secret. The receiver refuses a bad signature, a request meant for another node, a timestamp
// more than MaxSkew away, and a nonce it has seen. Every answer to an accepted request carries an HMAC over the
// answering node, the asking node, the request's nonce, the status and the body's hash: the asker accepts no
// answer that another host made up ({"demoted":true} from anyone but the node asked would skip its power-off) nor
// one replayed from another request.
const (
	HeaderNode      = "X-Mailcow-HA-Node"
	HeaderTo        = "X-Mailcow-HA-To"
	HeaderTime      = "X-Mailcow-HA-Time"
	HeaderNonce     = "X-Mailcow-HA-Nonce"
	HeaderSignature = "X-Mailcow-HA-Signature"
	HeaderAnswer    = "X-Mailcow-HA-Answer"
	MaxSkew         = 30 * time.Second
	maxBody         = 1 << 16
)

func signature(secret []byte, from, to, method, path, ts, nonce string, body []byte) string {
	sum := sha256.Sum256(body)
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "mailcow-ha-peer-v2\n%s\n%s\n%s\n%s\n%s\n%s\n%x", from, to, method, path, ts, nonce, sum)
	return hex.EncodeToString(m.Sum(nil))
}

// answerSignature is the HMAC of an answer by node from to node to's request with nonce.
func answerSignature(secret []byte, from, to, nonce string, status int, body []byte) string {
	sum := sha256.Sum256(body)
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "mailcow-ha-peer-answer-v2\n%s\n%s\n%s\n%d\n%x", from, to, nonce, status, sum)
	return hex.EncodeToString(m.Sum(nil))
}

// Sign adds the authentication headers to req, whose body is body, sent by node from to node to. It returns the
// request's nonce, which the answer's signature covers.
func Sign(req *http.Request, secret []byte, from, to string, body []byte, now time.Time) (nonce string) {
	nb := make([]byte, 16)
	rand.Read(nb)
	nonce = hex.EncodeToString(nb)
	ts := strconv.FormatInt(now.Unix(), 10)
	req.Header.Set(HeaderNode, from)
	req.Header.Set(HeaderTo, to)
	req.Header.Set(HeaderTime, ts)
	req.Header.Set(HeaderNonce, nonce)
	req.Header.Set(HeaderSignature, signature(secret, from, to, req.Method, req.URL.Path, ts, nonce, body))
	return nonce
}

// VerifyAnswer checks the signature of an answer from node from to this node's request with nonce: made with one
// of keys.
func VerifyAnswer(keys [][]byte, from, to, nonce string, status int, header http.Header, body []byte) error {
	got := []byte(header.Get(HeaderAnswer))
	for _, k := range keys {
		if hmac.Equal([]byte(answerSignature(k, from, to, nonce, status, body)), got) {
			return nil
		}
	}
	return fmt.Errorf("%w: the answer is not signed by %s for this request", ErrAuth, from)
}

// signedWith reports whether sig is the request's signature with one of keys.
func signedWith(keys [][]byte, sig, node, to, method, path, ts, nonce string, body []byte) bool {
	for _, k := range keys {
		if hmac.Equal([]byte(signature(k, node, to, method, path, ts, nonce, body)), []byte(sig)) {
			return true
		}
	}
	return false
}

// Verifier checks signed requests and remembers nonces for twice the allowed skew.
type Verifier struct {
	Keys  *Keyring        // the secrets a request may be signed with; answers are signed with its signing one
	Self  string          // this node's name: a request meant for another node is refused
	Nodes map[string]bool // the cluster's node names (SetNodes while requests are served)
	// OnUnknown is called (it must not block) for a request from a node not in Nodes that is signed with the
	// secret: a member the API lists now and this agent not yet.
	OnUnknown func(node string)
	Now       func() time.Time

	mu     sync.Mutex
	nonces map[string]time.Time

	// Refused counts the requests refused (for the metrics); see refusalLog for the journal.
	Refused atomic.Int64
	logMu   sync.Mutex
	logged  time.Time // the last refusal logged
	quiet   int64     // refusals not logged since
}

// refusalEvery is how often a refused request is logged at most: anyone on the private network can send them,
// and one line each would flood the journal past its rate limit, hiding the lines that matter.
const refusalEvery = 10 * time.Second

// refusalLog reports whether this refusal gets a log line, and how many went unlogged since the last one. Every
// refusal is counted in Refused.
func (v *Verifier) refusalLog(now time.Time) (log bool, skipped int64) {
	v.Refused.Add(1)
	v.logMu.Lock()
	defer v.logMu.Unlock()
	if !v.logged.IsZero() && now.Sub(v.logged) < refusalEvery {
		v.quiet++
		return false, 0
	}
	skipped, v.quiet, v.logged = v.quiet, 0, now
	return true, skipped
}

// ErrAuth is any authentication failure; the answer says no more than "unauthorized".
var ErrAuth = errors.New("unauthorized")

// Request is a verified request: its body, its sender and its nonce (which the answer's signature covers).
type Request struct {
	Body  []byte
	From  string
	Nonce string
}

// SetNodes replaces the cluster's node names (a member added or removed while the agent runs).
func (v *Verifier) SetNodes(names map[string]bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.Nodes = names
}

// Verify checks req and returns it verified.
func (v *Verifier) Verify(req *http.Request) (Request, error) {
	body, node, nonce, err := v.verify(req)
	if err != nil {
		return Request{}, err
	}
	return Request{Body: body, From: node, Nonce: nonce}, nil
}

func (v *Verifier) verify(req *http.Request) (body []byte, node, nonce string, err error) {
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	body, err = io.ReadAll(io.LimitReader(req.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		return nil, "", "", fmt.Errorf("%w: body", ErrAuth)
	}
	node = req.Header.Get(HeaderNode)
	ts, sig := req.Header.Get(HeaderTime), req.Header.Get(HeaderSignature)
	nonce = req.Header.Get(HeaderNonce)
	to := req.Header.Get(HeaderTo)
	v.mu.Lock()
	known := v.Nodes[node]
	v.mu.Unlock()
	if !known {
		// Signed with the cluster's secret, by a node this agent does not know yet: a node just added, before this
		// agent's next read of the members. It is still refused; the agent may read the members now.
		if v.OnUnknown != nil && signedWith(v.Keys.Accepted(), sig, node, to, req.Method, req.URL.Path, ts, nonce, body) {
			v.OnUnknown(node)
		}
		return nil, "", "", fmt.Errorf("%w: unknown node %q", ErrAuth, node)
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return nil, "", "", fmt.Errorf("%w: timestamp", ErrAuth)
	}
	if d := now.Sub(time.Unix(secs, 0)); d > MaxSkew || d < -MaxSkew {
		return nil, "", "", fmt.Errorf("%w: timestamp %s off", ErrAuth, d)
	}
	if len(nonce) < 16 {
		return nil, "", "", fmt.Errorf("%w: nonce", ErrAuth)
	}
	if !signedWith(v.Keys.Accepted(), sig, node, to, req.Method, req.URL.Path, ts, nonce, body) {
		return nil, "", "", fmt.Errorf("%w: signature", ErrAuth)
	}
	// Signed, but for another node: a request captured on its way to a peer is no good here.
	if v.Self == "" || to != v.Self {
		return nil, "", "", fmt.Errorf("%w: meant for %q, not this node", ErrAuth, to)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.nonces == nil {
		v.nonces = map[string]time.Time{}
	}
	for n, exp := range v.nonces {
		if now.After(exp) {
			delete(v.nonces, n)
		}
	}
	if _, seen := v.nonces[nonce]; seen {
		return nil, "", "", fmt.Errorf("%w: replayed nonce", ErrAuth)
	}
	v.nonces[nonce] = now.Add(2 * MaxSkew)
	req.Body = io.NopCloser(bytes.NewReader(body))
	return body, node, nonce, nil
}
