package vm

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"time"
)

// QMP is a client of QEMU's machine protocol on a unix socket: commands one at a time, events collected.
type QMP struct {
	conn   net.Conn
	r      *bufio.Reader
	mu     sync.Mutex
	events []string // event names seen, in order
}

// DialQMP connects and negotiates capabilities.
func DialQMP(path string, timeout time.Duration) (*QMP, error) {
	deadline := time.Now().Add(timeout)
	var conn net.Conn
	var err error
	for {
		conn, err = net.Dial("unix", path)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("qmp: %w", err)
	}
	q := &QMP{conn: conn, r: bufio.NewReader(conn)}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := q.r.ReadBytes('\n'); err != nil { // greeting
		conn.Close()
		return nil, fmt.Errorf("qmp greeting: %w", err)
	}
	conn.SetDeadline(time.Time{})
	if _, err := q.Do("qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

// Do runs a command and returns its "return" value, or its error.
func (q *QMP) Do(cmd string, args map[string]any) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	msg := map[string]any{"execute": cmd}
	if args != nil {
		msg["arguments"] = args
	}
	b, _ := json.Marshal(msg)
	q.conn.SetDeadline(time.Now().Add(30 * time.Second))
	defer q.conn.SetDeadline(time.Time{})
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	for {
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			return nil, fmt.Errorf("qmp %s: %w", cmd, err)
		}
		var m struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
			Event string `json:"event"`
		}
		if err := json.Unmarshal(line, &m); err != nil {
			return nil, fmt.Errorf("qmp %s: %w", cmd, err)
		}
		switch {
		case m.Event != "":
			q.events = append(q.events, m.Event)
		case m.Error != nil:
			return nil, fmt.Errorf("qmp %s: %s: %s", cmd, m.Error.Class, m.Error.Desc)
		default:
			return m.Return, nil
		}
	}
}

// WaitEvent waits until an event with the name has arrived (polling with query-status keeps reading).
func (q *QMP) WaitEvent(name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		q.mu.Lock()
		for i, e := range q.events {
			if e == name {
				q.events = append(q.events[:i], q.events[i+1:]...)
				q.mu.Unlock()
				return nil
			}
		}
		q.mu.Unlock()
		if time.Now().After(deadline) {
			return fmt.Errorf("qmp: no %s within %s", name, timeout)
		}
		time.Sleep(200 * time.Millisecond)
		if _, err := q.Do("query-status", nil); err != nil {
			return err
		}
	}
}

// Close closes the connection.
func (q *QMP) Close() error { return q.conn.Close() }
