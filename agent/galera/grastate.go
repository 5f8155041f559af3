package galera

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// ZeroUUID is the cluster uuid of a node that has no state (a new datadir, or an aborted state transfer).
const ZeroUUID = "00000000-0000-0000-0000-000000000000"

// Position is a node's place in the cluster's history.
type Position struct {
	UUID            string `json:"uuid"`
	Seqno           int64  `json:"seqno"` // -1: unknown (a crash); run --wsrep-recover
	SafeToBootstrap bool   `json:"safe_to_bootstrap"`
}

// Known reports whether the position can take part in choosing who bootstraps: a real cluster uuid and a seqno.
func (p Position) Known() bool { return p.UUID != "" && p.UUID != ZeroUUID && p.Seqno >= 0 }

// HasHistory reports whether the position belongs to a cluster (a uuid that is not zero), even without a seqno
// (a member that crashed before its position was recovered).
func (p Position) HasHistory() bool { return p.UUID != "" && p.UUID != ZeroUUID }

func (p Position) String() string { return fmt.Sprintf("%s:%d", p.UUID, p.Seqno) }

// ParseGrastate reads grastate.dat.
func ParseGrastate(b []byte) (Position, error) {
	p := Position{Seqno: -1}
	var seen bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return Position{}, fmt.Errorf("grastate.dat: %q", line)
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "uuid":
			p.UUID, seen = v, true
		case "seqno":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return Position{}, fmt.Errorf("grastate.dat: seqno %q", v)
			}
			p.Seqno = n
		case "safe_to_bootstrap":
			p.SafeToBootstrap = v == "1"
		}
	}
	if !seen {
		return Position{}, fmt.Errorf("grastate.dat: no uuid")
	}
	return p, nil
}

// FormatGrastate writes grastate.dat for p.
func FormatGrastate(p Position) []byte {
	safe := 0
	if p.SafeToBootstrap {
		safe = 1
	}
	return []byte(fmt.Sprintf("# GALERA saved state\nversion: 2.1\nuuid:    %s\nseqno:   %d\nsafe_to_bootstrap: %d\n", p.UUID, p.Seqno, safe))
}

var recoveredRE = regexp.MustCompile(`WSREP: Recovered position:\s+([0-9a-f-]{36}):(-?\d+)`)

// ParseRecovered finds the last "WSREP: Recovered position: <uuid>:<seqno>" in mariadbd's error log, which is
// where --wsrep-recover writes it (not to stdout, and not to grastate.dat).
func ParseRecovered(log []byte) (uuid string, seqno int64, ok bool) {
	m := recoveredRE.FindAllSubmatch(log, -1)
	if len(m) == 0 {
		return "", 0, false
	}
	last := m[len(m)-1]
	n, err := strconv.ParseInt(string(last[2]), 10, 64)
	if err != nil {
		return "", 0, false
	}
	return string(last[1]), n, true
}
