package api

// The cluster secrets a node holds. Outside a rotation there is one; during `cluster rotate-secret` a node also
// accepts the one staged next (before its switch) or the one before (after it), so that members that have switched
// and members that have not yet understand each other.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"sync"
)

// Keyring is the cluster secrets of a node or a command: the one it signs (and seals) with, and the others it
// accepts. It may change while requests are served (Set).
type Keyring struct {
	mu   sync.RWMutex
	sign []byte
	also [][]byte
}

// NewKeyring is a keyring that signs with sign and also accepts also.
func NewKeyring(sign []byte, also ...[]byte) *Keyring {
	k := &Keyring{}
	k.Set(sign, also...)
	return k
}

// Set replaces the keys: sign signs, and sign and also are accepted. Empty keys and repeats are dropped.
func (k *Keyring) Set(sign []byte, also ...[]byte) {
	var keep [][]byte
	for _, a := range also {
		if len(a) > 0 && !hmac.Equal(a, sign) && !slices.ContainsFunc(keep, func(b []byte) bool { return hmac.Equal(a, b) }) {
			keep = append(keep, slices.Clone(a))
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.sign, k.also = slices.Clone(sign), keep
}

// Signing is the secret this holder signs and seals with.
func (k *Keyring) Signing() []byte {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.sign
}

// Accepted are the secrets whose signatures and seals this holder accepts, the signing one first.
func (k *Keyring) Accepted() [][]byte {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return append([][]byte{k.sign}, k.also...)
}

// KeyID names a cluster secret without revealing it: the first 12 hex digits of an HMAC keyed with it. Nodes and
// commands compare secrets by it (a rotation's state); it is safe to log and to show.
func KeyID(secret []byte) string {
	if len(secret) == 0 {
		return ""
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("mailcow-ha key id v1"))
	return hex.EncodeToString(m.Sum(nil))[:12]
}
