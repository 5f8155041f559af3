// Package mailprobe speaks to a cluster's mail servers the way an operator checks them by hand: swaks sends a
// message, curl's IMAP reads the mailbox. The lab and the VM tests use it from their client's network namespace, so
// that what proves "no acknowledged mail lost" are standard clients, not our own.
package mailprobe

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Client reaches the mail servers at Server (the Floating IP) from the network namespace NS ("" for this one),
// with User's mailbox (any password logs in on the test servers).
type Client struct {
	NS     string
	Server string
	User   string
}

// Preflight says why the probes cannot run here, or "".
func Preflight() string {
	for _, bin := range []string{"swaks", "curl", "nsenter"} {
		if _, err := exec.LookPath(bin); err != nil {
			return bin + " is not installed (make deps installs it)"
		}
	}
	return ""
}

func (c Client) command(ctx context.Context, argv ...string) *exec.Cmd {
	if c.NS == "" {
		return exec.CommandContext(ctx, argv[0], argv[1:]...)
	}
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + c.NS, "--"}, argv...)...)
}

// Send sends one message from from to the mailbox with swaks on port 25, with the Message-ID id, and returns nil only
// when the server acknowledged its data with 250.
func (c Client) Send(ctx context.Context, from, id, subject string) error {
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := c.command(cctx, "swaks", "--server", c.Server, "--port", "25", "--from", from, "--to", c.User,
		"--header", "Message-Id: "+id, "--header", "Subject: "+subject, "--body", "mailcow-ha: "+subject,
		"--timeout", "5").CombinedOutput()
	if !dataAccepted(string(out)) {
		return fmt.Errorf("swaks: the data was not acknowledged with 250 (%v): %s", err, lastLine(string(out)))
	}
	return nil
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

// IMAP runs one IMAP command on the mailbox's INBOX with curl and returns curl's output: the command's untagged
// answers (without their literals).
func (c Client) IMAP(ctx context.Context, command string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var stderr strings.Builder
	cmd := c.command(cctx, "curl", "-sS", "--max-time", "25", "imap://"+c.Server+"/INBOX", "-u", c.User+":probe", "-X", command)
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

// MessageIDs returns the Message-ID of every message in the INBOX: EXAMINE, then FETCH a:b (ENVELOPE) in chunks.
func (c Client) MessageIDs(ctx context.Context) ([]string, error) {
	out, err := c.IMAP(ctx, "EXAMINE INBOX")
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
		out, err := c.IMAP(ctx, fmt.Sprintf("FETCH %d:%d (ENVELOPE)", first, min(first+fetchChunk-1, exists)))
		if err != nil {
			return nil, err
		}
		for _, m := range envelopeIDRE.FindAllStringSubmatch(out, -1) {
			ids = append(ids, m[1])
		}
	}
	return ids, nil
}
