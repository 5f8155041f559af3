package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// secretAgent is a peer agent that keeps a rotation's steps on its keyring, as the daemon does with its files.
type secretAgent struct {
	fakeAgent
	keys             *Keyring
	cur, next, prev  []byte
	staged, switched int
}

func (s *secretAgent) SecretState() SecretState {
	return SecretState{Signing: KeyID(s.cur), Next: KeyID(s.next), Prev: KeyID(s.prev)}
}
func (s *secretAgent) StageSecret(_ context.Context, next []byte) (SecretState, error) {
	if s.prev != nil {
		return s.SecretState(), errors.New("finish first")
	}
	s.next, s.staged = next, s.staged+1
	s.keys.Set(s.cur, s.next)
	return s.SecretState(), nil
}
func (s *secretAgent) SwitchSecret(_ context.Context, id string) (SecretState, error) {
	if KeyID(s.next) != id {
		return s.SecretState(), errors.New("not staged")
	}
	s.cur, s.prev, s.next, s.switched = s.next, s.cur, nil, s.switched+1
	s.keys.Set(s.cur, s.prev)
	return s.SecretState(), nil
}
func (s *secretAgent) FinishSecret(_ context.Context, id string) (SecretState, error) {
	if KeyID(s.cur) != id {
		return s.SecretState(), errors.New("switch first")
	}
	s.prev = nil
	s.keys.Set(s.cur)
	return s.SecretState(), nil
}

// A rotation over the peer API: the next secret travels sealed and is refused when it does not match its id; a
// refusal comes back as an error with the node's state; between the switch and the finish both secrets are
// accepted, after it only the new one.
func TestSecretRotationOverPeerAPI(t *testing.T) {
	next := []byte("fedcba9876543210fedcba9876543210")
	keys := NewKeyring(secret)
	a := &secretAgent{keys: keys, cur: secret}
	srv := httptest.NewServer(PeerHandler(&Verifier{Keys: keys, Self: "mx2", Nodes: map[string]bool{"mx1": true}}, a, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	ctx := context.Background()
	mx2 := Peer{Name: "mx2", URL: srv.URL}
	oldC := &PeerClient{Keys: NewKeyring(secret), Node: "mx1"}
	newC := &PeerClient{Keys: NewKeyring(next), Node: "mx1"}
	id := KeyID(next)
	if KeyID(secret) == id || len(id) != 12 || KeyID(nil) != "" {
		t.Fatalf("key ids: %q %q", KeyID(secret), id)
	}

	if _, err := newC.SecretState(ctx, mx2); err == nil {
		t.Fatal("a request signed with a secret the node does not hold was answered")
	}
	// A sealed secret whose id names another secret is refused.
	sealed, err := seal(secret, secretAAD, next)
	if err != nil {
		t.Fatal(err)
	}
	var st SecretState
	if err := oldC.do(ctx, "POST", mx2, "/peer/v1/secret/stage", SecretStageRequest{ID: KeyID(secret), Sealed: sealed}, &st); err == nil || a.staged != 0 {
		t.Fatalf("a secret under another id was staged: %v", err)
	}
	if st, err := oldC.StageSecret(ctx, mx2, next); err != nil || st.Next != id || st.Signing != KeyID(secret) {
		t.Fatalf("stage: %+v %v", st, err)
	}
	// A request signed with the staged secret is accepted (its answer is still signed with the old one).
	if _, err := (&PeerClient{Keys: NewKeyring(next, secret), Node: "mx1"}).SecretState(ctx, mx2); err != nil {
		t.Fatalf("the staged secret is not accepted: %v", err)
	}
	if _, err := oldC.SwitchSecret(ctx, mx2, "000000000000"); err == nil || !strings.Contains(err.Error(), "not staged") {
		t.Fatalf("a switch to a secret not staged: %v", err)
	}
	// The switch's answer is signed with the new secret: the asker must hold it (rotate-secret does).
	both := &PeerClient{Keys: NewKeyring(secret, next), Node: "mx1"}
	if st, err := both.SwitchSecret(ctx, mx2, id); err != nil || st.Signing != id || st.Prev != KeyID(secret) {
		t.Fatalf("switch: %+v %v", st, err)
	}
	// Between switch and finish both are accepted; the answers are signed with the new secret, which the old-only
	// client cannot verify, and a client that holds both can.
	if _, err := both.SecretState(ctx, mx2); err != nil {
		t.Fatalf("a client that holds both: %v", err)
	}
	if _, err := oldC.SecretState(ctx, mx2); err == nil {
		t.Fatal("an answer signed with the new secret was verified with the old one")
	}
	if st, err := newC.FinishSecret(ctx, mx2, id); err != nil || st.Prev != "" || !slices.EqualFunc(keys.Accepted(), [][]byte{next}, slices.Equal) {
		t.Fatalf("finish: %+v %v (accepts %d)", st, err, len(keys.Accepted()))
	}
	if _, err := newC.SecretState(ctx, mx2); err != nil {
		t.Fatalf("after the finish, with the new secret: %v", err)
	}
	if _, err := newC.StageSecret(ctx, mx2, next); err != nil {
		t.Fatalf("a stage of the secret it signs with: %v", err)
	}
	// A request signed with the retired secret is refused.
	if err := oldC.do(ctx, "GET", mx2, "/peer/v1/secret", nil, nil); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a request signed with the retired secret: %v", err)
	}
}

// A keyring drops empty keys and repeats, and signs with the first.
func TestKeyring(t *testing.T) {
	k := NewKeyring(secret, nil, secret, []byte("b"), []byte("b"))
	if got := k.Accepted(); len(got) != 2 || string(got[0]) != string(secret) || string(got[1]) != "b" {
		t.Fatalf("accepted: %q", got)
	}
}
