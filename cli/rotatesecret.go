package cli

// cluster rotate-secret: a new cluster secret on every data member without a restart and without a failover
// (docs/operations.md, "Rotate the cluster secret"). Each member is handed the new secret first and accepts both;
// then, in maintenance, all switch to it at once (VRRP's password changes within the same second on every node,
// well inside keepalived's master-down interval, and maintenance keeps any node from acting on a VRRP election
// meanwhile); then every member forgets the old one.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/failover"
)

const rotateSecretUsage = "cluster rotate-secret --secret-file FILE [--config PATH]"

// clusterRotateSecret rotates the cluster secret to the one in --secret-file. It is safe to run again with the
// same file: each step names the secret by its KeyID, and a member past a step is not asked again.
func clusterRotateSecret(ctx context.Context, args []string, stdio Stdio) int {
	fs := newFlags("cluster rotate-secret", rotateSecretUsage, stdio)
	src := sourceFlags(fs)
	file := fs.String("secret-file", "", "the new cluster secret, mode 0600 (openssl rand -hex 32 > FILE); keep it for the user-data of servers made later")
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha cluster rotate-secret: "+format+"\n", a...)
		return code
	}
	if *file == "" {
		return fail(ExitUsage, "--secret-file is required")
	}
	sec, err := config.SecretFiles{Owner: os.Geteuid()}.ReadSecret(*file)
	if err != nil {
		return fail(ExitUsage, "--secret-file: %v", err)
	}
	next := []byte(sec.Reveal())
	if err := config.CheckClusterSecret(string(next)); err != nil {
		return fail(ExitUsage, "--secret-file: %v", err)
	}
	src.Stdin = stdio.Stdin
	sess, code, err := openSession(ctx, *src)
	if err != nil {
		return fail(code, "%v", err)
	}
	if i := slices.IndexFunc(sess.cfg.Cluster.Nodes, config.Member.IsArbitrator); i >= 0 {
		return fail(ExitFailure, "the arbitrator %s (garbd) does not follow a rotation: remove it (cluster remove-node), rotate, "+
			"and add it again with user-data that carries the new secret", sess.cfg.Cluster.Nodes[i].Name)
	}
	id := api.KeyID(next)
	w := stdio.Stdout
	begin := time.Now()
	members := sess.cfg.DataMembers()

	// Every data member must answer: one that misses the rotation could not talk to the others afterwards.
	states, err := sess.secretStates(ctx, members)
	if err != nil {
		return fail(ExitFailure, "%v; nothing changed", err)
	}
	if !slices.ContainsFunc(states, func(s api.SecretState) bool { return s.Signing != id || s.Prev != "" || s.Next != "" }) {
		fmt.Fprintf(w, "every node signs with the cluster secret %s already\n", id)
		return ExitOK
	}

	// 1. Stage: each member accepts the new secret beside its own (and trusts its Galera CA).
	for i, m := range members {
		if states[i].Signing == id || states[i].Next == id {
			continue
		}
		st, err := sess.peers.StageSecret(ctx, sess.peer(m), next)
		if err != nil {
			return fail(ExitFailure, "%s: stage: %v", m.Name, err)
		}
		states[i] = st
		fmt.Fprintf(w, "%s: staged %s\n", m.Name, id)
	}

	// The switch's answers are signed with the new secret.
	sess.keys.Set(sess.keys.Signing(), append(sess.keys.Accepted(), next)...)

	// 2. Switch, all at once, in maintenance.
	if slices.ContainsFunc(states, func(s api.SecretState) bool { return s.Signing != id }) {
		if err := sess.switchSecret(ctx, members, states, next, w); err != nil {
			return fail(ExitFailure, "%v", err)
		}
	}
	sess.keys.Set(next, sess.keys.Accepted()...)

	// 3. Finish: every member forgets the old secret.
	for _, m := range members {
		if _, err := sess.peers.FinishSecret(ctx, sess.peer(m), id); err != nil {
			return fail(ExitFailure, "%s: finish: %v (run the command again)", m.Name, err)
		}
	}
	fmt.Fprintf(w, "cluster secret rotated to %s on %d nodes in %s; the old secret is no longer accepted\n",
		id, len(members), time.Since(begin).Round(100*time.Millisecond))
	fmt.Fprintln(w, "servers made from now on need user-data with the new secret; mailcow.conf's derived secrets change at the MASTER's next start (cluster switchover renews them now)")
	return ExitOK
}

// secretStates asks every member which secrets it holds; all must answer.
func (s memberSession) secretStates(ctx context.Context, members []config.Member) ([]api.SecretState, error) {
	out := make([]api.SecretState, len(members))
	for i, m := range members {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := s.peers.SecretState(qctx, s.peer(m))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s did not answer (every data member must take part in a rotation): %w", m.Name, err)
		}
		out[i] = st
	}
	return out, nil
}

// switchSecret puts every member in maintenance, switches all of them to the secret id at once, waits until VRRP
// has one MASTER (the one before) and the others BACKUP, and ends maintenance on every member that switched (one
// that failed stays in maintenance: its VRRP password may be the old one).
func (s memberSession) switchSecret(ctx context.Context, members []config.Member, states []api.SecretState, next []byte, w io.Writer) error {
	id := api.KeyID(next)
	master, err := s.master(ctx)
	if err != nil {
		return err
	}
	var wasOn []string
	for _, r := range s.revisions(ctx) {
		if r.err == nil && r.st.Maintenance {
			wasOn = append(wasOn, r.m.Name)
		}
	}
	for _, m := range members {
		if err := s.peers.Maintenance(ctx, s.peer(m), true); err != nil {
			return fmt.Errorf("%s: maintenance on: %w (nothing switched; end maintenance where it is on with `mailcow-ha maintenance off`)", m.Name, err)
		}
	}
	t0 := time.Now()
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		if states[i].Signing == id {
			continue
		}
		wg.Go(func() {
			qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			_, errs[i] = s.peers.SwitchSecret(qctx, s.peer(m), id)
		})
	}
	wg.Wait()
	took := time.Since(t0)
	var failed []string
	for i, m := range members {
		if errs[i] != nil {
			failed = append(failed, m.Name)
			fmt.Fprintf(w, "%s: switch: %v\n", m.Name, errs[i])
		}
	}
	fmt.Fprintf(w, "switched %d of %d nodes to %s in %s\n", len(members)-len(failed), len(members), id, took.Round(time.Millisecond))
	// The command signs with the new secret from now on: switched members accept the old one until the finish,
	// those that failed accept the new one as staged.
	s.keys.Set(next, s.keys.Accepted()...)
	settled := s.vrrpSettled(ctx, members, master.Name, 15*time.Second)
	if settled != nil {
		fmt.Fprintf(w, "VRRP: %v\n", settled)
	}
	for _, m := range members {
		if slices.Contains(failed, m.Name) || slices.Contains(wasOn, m.Name) {
			continue
		}
		if err := s.peers.Maintenance(ctx, s.peer(m), false); err != nil {
			fmt.Fprintf(w, "%s: maintenance off: %v\n", m.Name, err)
			failed = append(failed, m.Name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s did not switch and stay in maintenance: see above, then run the command again", strings.Join(failed, ", "))
	}
	if settled != nil {
		return fmt.Errorf("the switch is done, but VRRP did not settle: %w", settled)
	}
	return nil
}

// vrrpSettled waits until master is MASTER (agent and VRRP) and every other member is a VRRP BACKUP.
func (s memberSession) vrrpSettled(ctx context.Context, members []config.Member, master string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		var off []string
		for _, r := range s.revisions(ctx) {
			want := failover.VRRPBackup
			if r.m.Name == master {
				want = failover.VRRPMaster
			}
			switch {
			case r.err != nil:
				off = append(off, r.m.Name+" not answering")
			case r.st.VRRP != string(want) || (r.m.Name == master && r.st.Role != string(failover.RoleMaster)):
				off = append(off, fmt.Sprintf("%s is %s (VRRP %s)", r.m.Name, r.st.Role, r.st.VRRP))
			}
		}
		if len(off) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New(strings.Join(off, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
