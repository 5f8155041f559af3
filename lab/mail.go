package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailcow-ha/mailcow-ha/mailprobe"
)

// Ledger records every message that the cluster acknowledged with 250: each must be readable later.
type Ledger struct {
	path string
	mu   sync.Mutex
}

// Ledger returns the lab's ledger.
func (l *Lab) Ledger() *Ledger { return &Ledger{path: filepath.Join(l.o.Dir, "ledger.txt")} }

func (g *Ledger) add(id string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	f, err := os.OpenFile(g.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, id)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// IDs returns the acknowledged Message-IDs.
func (g *Ledger) IDs() ([]string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	b, err := os.ReadFile(g.path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	return strings.Fields(string(b)), err
}

// dialClient opens a TCP connection from the client namespace.
func (l *Lab) dialClient(addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := l.client.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	return c, err
}

// Probe GETs http://addr:HealthPort/path from the client namespace, as a monitor or a load balancer would, and
// returns the status code and the body.
func (l *Lab) Probe(ctx context.Context, addr, path string) (int, []byte, error) {
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, a string) (net.Conn, error) { return l.dialClient(a, 2*time.Second) },
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(addr, strconv.Itoa(HealthPort))+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, b, err
}

// probe is the lab's mail client: swaks and curl in the client's namespace, to the Floating IP, as lab@example.org.
func (l *Lab) probe() mailprobe.Client {
	return mailprobe.Client{NS: l.client.Name, Server: FloatingIP, User: Mailbox}
}

// SendOne sends one message to the Floating IP from the client with swaks and records it when postfix acknowledged
// its data with 250.
func (l *Lab) SendOne(ctx context.Context, seq int) (string, error) {
	id := fmt.Sprintf("<lab-%d-%d@client.lab>", time.Now().UnixNano(), seq)
	if err := l.probe().Send(ctx, "probe@client.lab", id, fmt.Sprintf("lab mail %d", seq)); err != nil {
		return "", err
	}
	if err := l.Ledger().add(id); err != nil {
		return "", fmt.Errorf("ledger: %w", err)
	}
	return id, nil
}

// SendMail sends n messages; it returns how many were acknowledged and the last error.
func (l *Lab) SendMail(ctx context.Context, n int) (int, error) {
	ok := 0
	var last error
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if _, err := l.SendOne(ctx, i); err != nil {
			last = err
			continue
		}
		ok++
	}
	return ok, last
}

// IMAP runs one IMAP command on the lab mailbox's INBOX with curl from the client, through the Floating IP, and
// returns curl's output: the command's untagged answers (without their literals).
func (l *Lab) IMAP(ctx context.Context, command string) (string, error) {
	return l.probe().IMAP(ctx, command)
}

// ReadMail reads the Message-ID of every message in the lab mailbox with curl's IMAP through the Floating IP.
func (l *Lab) ReadMail(ctx context.Context) ([]string, error) {
	// Right after a takeover the new master may still be settling: a client retries for a while.
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		ids, err := l.probe().MessageIDs(ctx)
		if err == nil || time.Now().After(end) || ctx.Err() != nil {
			return ids, err
		}
	}
}

// DeliveryWait is how long CheckMail waits for acknowledged mail to reach the mailbox: postfix hands it to dovecot
// after the 250, and mail that waited in the queue through a failover is retried within queue_run_delay.
const DeliveryWait = 60 * time.Second

// CheckMail compares the ledger with the mailbox: every acknowledged message must be there (within DeliveryWait).
func (l *Lab) CheckMail(ctx context.Context) (acked int, missing []string, err error) {
	want, err := l.Ledger().IDs()
	if err != nil {
		return 0, nil, err
	}
	missing, _, err = l.MissingMail(ctx, want)
	return len(want), missing, err
}

// MissingMail returns the messages of want (Message-IDs) that the mailbox does not hold within DeliveryWait, and
// how many messages it holds.
func (l *Lab) MissingMail(ctx context.Context, want []string) (missing []string, held int, err error) {
	for end := time.Now().Add(DeliveryWait); ; time.Sleep(2 * time.Second) {
		have, err := l.ReadMail(ctx)
		if err != nil {
			return nil, 0, err
		}
		held = len(have)
		got := map[string]bool{}
		for _, id := range have {
			got[id] = true
		}
		missing = missing[:0]
		for _, id := range want {
			if !got[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 || time.Now().After(end) || ctx.Err() != nil {
			break
		}
	}
	sort.Strings(missing)
	return missing, held, nil
}
