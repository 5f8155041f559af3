package daemon

// The cluster secret's rotation on a node (`mailcow-ha cluster rotate-secret`, over the peer API's secret routes).
// The secret lives in cluster.secret_file; during a rotation two more files sit beside it (mode 0600): ".next", the
// secret staged, and ".prev", the secret before the switch. The node signs with the file's secret and accepts all
// three, so that members that have switched and members that have not yet understand each other. Every step ends
// in applyKeys: the keyring again from the files, keepalived's VRRP password (a reload), and Galera's CA bundle and
// certificate (a live TLS reload of mariadbd).

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/event"
	"github.com/mailcow-ha/mailcow-ha/agent/galera"
	"github.com/mailcow-ha/mailcow-ha/agent/report"
)

// secretSet is the cluster secrets a node holds (config.ClusterSecrets).
type secretSet config.ClusterSecrets

func readSecretSet(path string, owner config.SecretFiles) (secretSet, error) {
	s, err := owner.ReadClusterSecrets(path)
	return secretSet(s), err
}

// keyring signs with the current secret and accepts the other two.
func (s secretSet) keyring() *api.Keyring { return api.NewKeyring(s.Cur, s.Next, s.Prev) }

func (s secretSet) state() api.SecretState {
	return api.SecretState{Signing: api.KeyID(s.Cur), Next: api.KeyID(s.Next), Prev: api.KeyID(s.Prev)}
}

// loadKeyring is the node's keyring at its start.
func loadKeyring(c config.Config, owner config.SecretFiles) (*api.Keyring, error) {
	s, err := readSecretSet(c.Cluster.SecretFile, owner)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	return s.keyring(), nil
}

func (a *Agent) secretSet() (secretSet, error) {
	return readSecretSet(a.c.Cluster.SecretFile, config.SecretFiles{Owner: a.o.SecretOwner})
}

// SecretState (api.SecretAgent) is the secrets this node holds, by KeyID.
func (a *Agent) SecretState() api.SecretState {
	a.secMu.Lock()
	defer a.secMu.Unlock()
	s, err := a.secretSet()
	if err != nil {
		a.log.Error("cluster secret", "err", err)
	}
	return s.state()
}

// StageSecret (api.SecretAgent) keeps next beside the secret, and accepts it from now on (the peer API, VRRP keeps
// the password of the signing secret, Galera trusts both CAs). A node that signs with next already has nothing to
// do; a rotation that has switched but not finished must finish first.
func (a *Agent) StageSecret(ctx context.Context, next []byte) (api.SecretState, error) {
	a.secMu.Lock()
	defer a.secMu.Unlock()
	s, err := a.secretSet()
	if err != nil {
		return s.state(), err
	}
	id := api.KeyID(next)
	switch {
	case id == api.KeyID(s.Cur):
		return s.state(), nil
	case s.Prev != nil:
		return s.state(), fmt.Errorf("a rotation to %s is not finished (the secret before it, %s, is still accepted): finish it first", api.KeyID(s.Cur), api.KeyID(s.Prev))
	}
	if err := config.CheckClusterSecret(string(next)); err != nil {
		return s.state(), err
	}
	if s.Next != nil && api.KeyID(s.Next) != id {
		a.log.Warn("cluster secret: another secret was staged and is replaced (a rotation started again)", "staged", api.KeyID(s.Next), "next", id)
	}
	if err := config.WriteSecret(a.c.Cluster.SecretFile+".next", string(next)); err != nil {
		return s.state(), fmt.Errorf("cluster secret: %w", err)
	}
	return a.secretStep(ctx, event.SecretStaged, "cluster secret "+id+" staged: accepted beside "+api.KeyID(s.Cur)+", which still signs")
}

// SwitchSecret (api.SecretAgent) makes the staged secret id the one this node signs with; the one before stays
// accepted until FinishSecret.
func (a *Agent) SwitchSecret(ctx context.Context, id string) (api.SecretState, error) {
	a.secMu.Lock()
	defer a.secMu.Unlock()
	s, err := a.secretSet()
	if err != nil {
		return s.state(), err
	}
	if api.KeyID(s.Cur) == id {
		return s.state(), nil
	}
	if api.KeyID(s.Next) != id {
		return s.state(), fmt.Errorf("the secret %s is not staged on this node (stage it first)", id)
	}
	path := a.c.Cluster.SecretFile
	if err := config.WriteSecret(path+".prev", string(s.Cur)); err != nil {
		return s.state(), fmt.Errorf("cluster secret: %w", err)
	}
	if err := os.Rename(path+".next", path); err != nil {
		return s.state(), fmt.Errorf("cluster secret: %w", err)
	}
	return a.secretStep(ctx, event.SecretSwitched, "this node signs with cluster secret "+id+"; "+api.KeyID(s.Cur)+" is still accepted")
}

// FinishSecret (api.SecretAgent) forgets the secret before id, which this node must sign with.
func (a *Agent) FinishSecret(ctx context.Context, id string) (api.SecretState, error) {
	a.secMu.Lock()
	defer a.secMu.Unlock()
	s, err := a.secretSet()
	if err != nil {
		return s.state(), err
	}
	if api.KeyID(s.Cur) != id {
		return s.state(), fmt.Errorf("this node signs with %s, not %s (switch it first)", api.KeyID(s.Cur), id)
	}
	if s.Prev == nil {
		return s.state(), nil
	}
	if err := os.Remove(a.c.Cluster.SecretFile + ".prev"); err != nil {
		return s.state(), fmt.Errorf("cluster secret: %w", err)
	}
	return a.secretStep(ctx, event.SecretRotated, "cluster secret rotated to "+id+": "+api.KeyID(s.Prev)+" is deleted and no longer accepted")
}

// secretStep applies the files as they are now and reports the step; a failure to apply is an error of the step
// (the files stay: the step asked again applies them again).
func (a *Agent) secretStep(ctx context.Context, name event.Name, msg string) (api.SecretState, error) {
	s, err := a.secretSet()
	if err != nil {
		return s.state(), err
	}
	if err := a.applyKeys(ctx, s); err != nil {
		a.alert(name, report.SeverityWarning, "", 0, msg+"; not applied everywhere: "+err.Error(), nil)
		return s.state(), err
	}
	a.alert(name, report.SeverityInfo, "", 0, msg, nil)
	return s.state(), nil
}

// applyKeys makes the agent run with the secrets s: the keyring (peer API, config seals), keepalived's VRRP password
// (first: VRRP is what a split between switched and unswitched nodes would hurt), and Galera's TLS files, which a
// running mariadbd reloads.
func (a *Agent) applyKeys(ctx context.Context, s secretSet) error {
	a.keys.Set(s.Cur, s.Next, s.Prev)
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	a.mu.Lock()
	c := a.c
	a.mu.Unlock()
	changed, err := a.writeKeepalivedConfig(c)
	if err != nil {
		return err
	}
	if changed && a.ka != nil {
		if err := a.ka.Reload(); err != nil {
			return fmt.Errorf("keepalived: %w", err)
		}
	}
	if !c.Galera.TLS || a.galeraSpec.TLS == nil {
		return nil
	}
	self, _ := c.Self()
	if _, err := galeraTLS(c, self, a.keys); err != nil {
		return err
	}
	if err := galera.ReloadTLS(ctx, c.Galera.Socket); err != nil {
		// The files are in place: a mariadbd that is not running reads them at its start.
		if _, serr := os.Stat(c.Galera.Socket); errors.Is(serr, os.ErrNotExist) {
			a.log.Warn("cluster secret: Galera is not running; it reads the new TLS files at its start", "err", err)
			return nil
		}
		return fmt.Errorf("galera: %w", err)
	}
	return nil
}
