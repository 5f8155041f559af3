package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
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

// SendOne sends one message to the Floating IP from the client with swaks and records it when postfix acknowledged
// its data with 250.
func (l *Lab) SendOne(ctx context.Context, seq int) (string, error) {
	id := fmt.Sprintf("<lab-%d-%d@client.lab>", time.Now().UnixNano(), seq)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := l.clientCommand(cctx, "swaks", "--server", FloatingIP, "--port", "25", "--from", "probe@client.lab",
		"--to", Mailbox, "--header", "Message-Id: "+id, "--header", fmt.Sprintf("Subject: lab mail %d", seq),
		"--body", fmt.Sprintf("mailcow-ha lab mail %d", seq), "--timeout", "5").CombinedOutput()
	if !dataAccepted(string(out)) {
		return "", fmt.Errorf("swaks: the data was not acknowledged with 250 (%v): %s", err, lastLine(string(out)))
	}
	if err := l.Ledger().add(id); err != nil {
		return "", fmt.Errorf("ledger: %w", err)
	}
	return id, nil
}

// dataAccepted reports whether a swaks transcript shows a 250 to the end of the data (" -> ." is swaks's line for
// the final dot, "<-  250 " a server's 250).
func dataAccepted(transcript string) bool {
	_, after, ok := strings.Cut(transcript, "\n -> .\n")
	return ok && strings.Contains(after, "<-  250 ")
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// clientCommand runs argv in the client's network namespace.
func (l *Lab) clientCommand(ctx context.Context, argv ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + l.client.Name, "--"}, argv...)...)
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
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var stderr strings.Builder
	cmd := l.clientCommand(cctx, "curl", "-sS", "--max-time", "25", "imap://"+FloatingIP+"/INBOX", "-u", Mailbox+":lab", "-X", command)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("curl imap %q: %w: %s", command, err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// fetchChunk is how many messages one FETCH asks for. curl 7.88 (Debian 12) counts an IMAP answer's untagged lines
// against its 300 KiB limit for response headers, and when the answer arrives in pieces it counts what is still
// buffered again at every line: `FETCH 1:100 (ENVELOPE)` (27 KB) failed with exit 56 "Too large response headers"
// in 2 of 20 tries, after a dozen lines. The recount is at most lines × answer, 25 × 25 × about 270 bytes = 170 KB
// here (48 tries of 25, none failed).
const fetchChunk = 25

var (
	existsRE     = regexp.MustCompile(`(?m)^\* (\d+) EXISTS`)
	envelopeIDRE = regexp.MustCompile(`"(<[^"\s]+>)"\)`) // the envelope's last field is the Message-ID
)

// ReadMail fetches the envelope of every message in the lab mailbox over IMAP through the Floating IP and returns
// their Message-IDs.
func (l *Lab) ReadMail(ctx context.Context) ([]string, error) {
	var out string
	var err error
	// Right after a takeover the new master may still be settling: a client retries for a while.
	for end := time.Now().Add(20 * time.Second); ; {
		if out, err = l.IMAP(ctx, "EXAMINE INBOX"); err == nil || time.Now().After(end) || ctx.Err() != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	m := existsRE.FindStringSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("imap: no EXISTS in the answer to EXAMINE: %q", out)
	}
	exists, _ := strconv.Atoi(m[1])
	var ids []string
	for first := 1; first <= exists; first += fetchChunk {
		last := min(first+fetchChunk-1, exists)
		out, err := l.IMAP(ctx, fmt.Sprintf("FETCH %d:%d (ENVELOPE)", first, last))
		if err != nil {
			return nil, err
		}
		for _, m := range envelopeIDRE.FindAllStringSubmatch(out, -1) {
			ids = append(ids, m[1])
		}
	}
	return ids, nil
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
	for end := time.Now().Add(DeliveryWait); ; time.Sleep(2 * time.Second) {
		have, err := l.ReadMail(ctx)
		if err != nil {
			return len(want), nil, err
		}
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
	return len(want), missing, nil
}
