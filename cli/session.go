package cli

// A command run on a member that talks to the whole cluster (cluster upgrade, config apply): the node's
// configuration, the members, this node among them, and the peer API signed with the cluster secret.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/check"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/membership"
	"github.com/mailcow-ha/mailcow-ha/provision"
)

// memberSession is the cluster as a command on a member reaches it.
type memberSession struct {
	cfg   config.Config
	base  config.Payload // the node's own configuration, without the cluster's layered on it
	self  string
	keys  *api.Keyring
	peers *api.PeerClient
}

// openSession reads the node's configuration and the members (the cache that the agent keeps when they come from
// the API). The members' state comes over the peer API, signed as this node with the cluster secret (and so are
// the answers): a host on the private network cannot make a roll go on. Hence: run it on a member. A usage
// problem comes back with ExitUsage, anything else with ExitFailure.
func openSession(ctx context.Context, src config.Sources) (memberSession, int, error) {
	var s memberSession
	var err error
	s.cfg, s.base, err = loadConfig(ctx, src)
	if err != nil {
		return s, ExitUsage, err
	}
	if s.cfg.Discovers() {
		if s.cfg.Cluster.Nodes, err = membership.Cached(&s.cfg); err != nil {
			return s, ExitFailure, err
		}
	}
	s.self = localMember(s.cfg.Cluster.Nodes)
	if s.self == "" {
		return s, ExitUsage, errors.New("run it on a node of the cluster (none of the members' private addresses is on this machine)")
	}
	keys, err := clusterKeys(s.cfg)
	if err != nil {
		return s, ExitFailure, err
	}
	s.keys = keys
	s.peers = &api.PeerClient{Keys: keys, Node: s.self}
	return s, ExitOK, nil
}

// listSession opens the session of a command that takes no flag but --config and lists what each member says
// (`config show`, `mailcow release`); ok is false when the command is done, with code.
func listSession(ctx context.Context, name string, args []string, stdio Stdio) (sess memberSession, code int, ok bool) {
	fs := newFlags(name, name+" [--config PATH]", stdio)
	src := sourceFlags(fs)
	if code, done := parseFlags(fs, args, stdio); done {
		return sess, code, false
	}
	src.Stdin = stdio.Stdin
	sess, code, err := openSession(ctx, *src)
	if err != nil {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha %s: %v\n", name, err)
		return sess, code, false
	}
	return sess, ExitOK, true
}

// clusterKeys is the cluster secrets of a command on a member: the one in cluster.secret_file, which it signs
// with, and during a rotation the node's staged and previous ones, which it also accepts. The secret given inline
// counts only where the file is missing (the agent writes it at its start; a rotation changes the file only).
func clusterKeys(c config.Config) (*api.Keyring, error) {
	if _, err := os.Stat(c.Cluster.SecretFile); errors.Is(err, fs.ErrNotExist) && c.Cluster.Secret.Set() {
		return api.NewKeyring([]byte(c.Cluster.Secret.Reveal())), nil
	}
	cs, err := config.SecretFiles{Owner: os.Geteuid()}.ReadClusterSecrets(c.Cluster.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("the cluster secret: %w", err)
	}
	return api.NewKeyring(cs.Cur, cs.Next, cs.Prev), nil
}

// peer is a member as the peer API reaches it.
func (s memberSession) peer(m config.Member) api.Peer {
	return api.Peer{Name: m.Name, URL: s.cfg.PeerURL(m)}
}

// roll is the cluster as a rolling change sees it: the members' state over the peer API, the switchover through
// the local agent (which tells every agent).
func (s memberSession) roll(within time.Duration, dry bool, stdio Stdio) provision.Roll {
	return provision.Roll{
		Members: s.cfg.Cluster.Nodes, Self: s.self, Within: within, DryRun: dry, Log: stdio.Stdout,
		Status: func(ctx context.Context, m config.Member) (api.PeerState, error) {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return s.peers.State(ctx, s.peer(m))
		},
		Switchover: func(_ context.Context, to string) error {
			ans, err := check.Ask(s.cfg.API.Socket, "switchover "+to, 30*time.Second)
			if err != nil {
				return err
			}
			if word, rest, _ := strings.Cut(ans, " "); word != "ok" {
				return errors.New(rest)
			}
			return nil
		},
	}
}
