package hcloudsim

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// action is one API action.
type action struct {
	ID        int64
	Command   string
	Status    string // running, success, error
	Progress  int
	Started   time.Time
	Finished  time.Time
	ErrCode   string
	ErrMsg    string
	Resources []resRef
	latency   time.Duration
}

// errLocked is returned by start when a resource already has a running action.
type errLocked struct{ res resRef }

func (e errLocked) Error() string { return fmt.Sprintf("%s is locked by a running action", e.res) }

// start registers a running action on res and completes it after the command's latency: it calls effect
// (outside the lock), then commit under the lock. effect's error fails the action. The first nlock resources
// are locked while it runs. The caller holds s.mu.
func (s *Sim) start(cmd string, res []resRef, nlock int, effect func() error, commit func()) (*action, error) {
	for _, r := range res[:nlock] {
		if _, busy := s.locks[r]; busy {
			return nil, errLocked{r}
		}
	}
	a := &action{
		ID: s.nextID, Command: cmd, Status: "running", Started: time.Now().UTC(),
		Resources: res, latency: s.latencies[cmd],
	}
	s.nextID++
	s.actions[a.ID] = a
	for _, r := range res[:nlock] {
		s.locks[r] = a.ID
	}
	s.wg.Add(1)
	go s.run(a, effect, commit)
	return a, nil
}

func (s *Sim) run(a *action, effect func() error, commit func()) {
	defer s.wg.Done()
	select {
	case <-time.After(a.latency):
	case <-s.closed:
		return
	}
	// A stuck command keeps running until the fault is cleared.
	for {
		s.mu.Lock()
		stuck := slices.Contains(s.faults.Stuck, a.Command)
		ch := s.faultsCh
		s.mu.Unlock()
		if !stuck {
			break
		}
		select {
		case <-ch:
		case <-s.closed:
			return
		}
	}
	err := effect()
	s.mu.Lock()
	defer s.mu.Unlock()
	a.Finished = time.Now().UTC()
	a.Progress = 100
	if err != nil {
		a.Status = "error"
		a.ErrCode = "action_failed"
		var ae actionError
		if errors.As(err, &ae) {
			a.ErrCode = ae.code
		}
		a.ErrMsg = err.Error()
		s.log.Info("action failed", "action_id", a.ID, "command", a.Command, "err", err)
	} else {
		a.Status = "success"
		commit()
		s.log.Info("action done", "action_id", a.ID, "command", a.Command, "took", a.Finished.Sub(a.Started))
	}
	for _, r := range a.Resources {
		if s.locks[r] == a.ID {
			delete(s.locks, r)
		}
	}
}

// actionError fails an action with a given code.
type actionError struct{ code, msg string }

func (e actionError) Error() string { return e.msg }

// snapshot copies an action for output, with progress estimated from the time it has run.
func (a *action) snapshot(now time.Time) action {
	c := *a
	if c.Status == "running" && a.latency > 0 {
		c.Progress = min(99, int(100*now.Sub(a.Started)/a.latency))
	}
	return c
}

// ActionRecord is one action as it ran, for timelines (the lab's failover benchmark).
type ActionRecord struct {
	ID       int64
	Command  string
	Status   string
	Started  time.Time
	Finished time.Time // zero while running
	// Servers are the server ids among the action's resources.
	Servers []int64
}

// Actions returns every action the simulator has run, oldest first.
func (s *Sim) Actions() []ActionRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ActionRecord, 0, len(s.actions))
	for _, a := range s.actions {
		r := ActionRecord{ID: a.ID, Command: a.Command, Status: a.Status, Started: a.Started, Finished: a.Finished}
		for _, res := range a.Resources {
			if res.Type == "server" {
				r.Servers = append(r.Servers, res.ID)
			}
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b ActionRecord) int { return int(a.ID - b.ID) })
	return out
}
