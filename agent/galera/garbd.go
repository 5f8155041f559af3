package galera

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/child"
)

// Arbitrator runs garbd (galera-arbitrator-4): a member that votes for quorum and stores nothing, so that an even
// number of data nodes keeps a majority when one fails. It never bootstraps and never serves.
type Arbitrator struct {
	Bin         string // default garbd
	ClusterName string
	NodeName    string
	NodeIP      string
	Members     []string // the data members' private IPs
	GroupPort   int
	Wrap        []string
	Output      io.Writer
	TLS         *TLSFiles // the members' TLS (garbd speaks gcomm like them)

	mu sync.Mutex // Members may change while garbd runs (SetMembers)
	c  child.Child
}

// SetMembers replaces the data members' private IPs garbd connects to at its next start (a running garbd follows
// the cluster's view by itself).
func (a *Arbitrator) SetMembers(ips []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.Members = slices.Clone(ips)
}

// MemberIPs are the data members' private IPs garbd connects to at its next start.
func (a *Arbitrator) MemberIPs() []string { return a.members() }

// members is the data members' private IPs now.
func (a *Arbitrator) members() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.Members)
}

// Start starts garbd; it joins the running cluster (it cannot start one).
func (a *Arbitrator) Start() error {
	if _, err := netip.ParseAddr(a.NodeIP); err != nil {
		return fmt.Errorf("galera: arbitrator address %q", a.NodeIP)
	}
	var peers []string
	for _, m := range a.members() {
		if _, err := netip.ParseAddr(m); err != nil {
			return fmt.Errorf("galera: member address %q", m)
		}
		peers = append(peers, net.JoinHostPort(m, strconv.Itoa(a.GroupPort)))
	}
	if a.ClusterName == "" || strings.ContainsAny(a.ClusterName+a.NodeName, " \n\"';") {
		return fmt.Errorf("galera: cluster or node name not plain")
	}
	bin := or(a.Bin, "garbd")
	opts := "gmcast.listen_addr=tcp://" + net.JoinHostPort(a.NodeIP, strconv.Itoa(a.GroupPort))
	if a.TLS != nil {
		opts += ProviderTLS(*a.TLS)
	}
	argv := append(append([]string{}, a.Wrap...), bin, "--group", a.ClusterName, "--name", a.NodeName,
		"--address", "gcomm://"+strings.Join(peers, ","), "--options", opts)
	if err := a.c.Start(argv, a.Output); err != nil {
		return fmt.Errorf("galera: garbd: %w", err)
	}
	return nil
}

// Done is closed when garbd has exited.
func (a *Arbitrator) Done() <-chan struct{} { return a.c.Done() }

// Stop ends garbd.
func (a *Arbitrator) Stop(timeout time.Duration) { a.c.Stop(timeout) }
