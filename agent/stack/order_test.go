package stack

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// Each service starts after everything it depends on, and no sooner; an unrelated slow one delays nobody; a failed
// one keeps its dependents down and is named.
func TestInOrder(t *testing.T) {
	deps := map[string][]string{
		"unbound": nil,
		"clamd":   {"unbound"},
		"mysql":   {"unbound"},
		"postfix": {"mysql", "unbound"},
		"nginx":   {"postfix", "clamd", "ghost"}, // ghost: unknown, ignored
	}
	var mu sync.Mutex
	started, ended := map[string]time.Time{}, map[string]time.Time{}
	err := inOrder(deps, func(s string) error {
		mu.Lock()
		started[s] = time.Now()
		mu.Unlock()
		if s == "clamd" {
			time.Sleep(300 * time.Millisecond) // a slow start
		} else {
			time.Sleep(10 * time.Millisecond)
		}
		mu.Lock()
		ended[s] = time.Now()
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for s, ds := range deps {
		for _, d := range ds {
			if _, known := deps[d]; known && started[s].Before(ended[d]) {
				t.Errorf("%s started before %s, which it depends on, had started", s, d)
			}
		}
	}
	if !started["postfix"].Before(ended["clamd"]) {
		t.Errorf("postfix waited for clamd, which it does not depend on")
	}
	if started["nginx"].Before(ended["clamd"]) {
		t.Errorf("nginx started before clamd")
	}

	// A failure: mysql fails, postfix and nginx do not start, clamd does.
	mu.Lock()
	started = map[string]time.Time{}
	mu.Unlock()
	err = inOrder(deps, func(s string) error {
		mu.Lock()
		started[s] = time.Now()
		mu.Unlock()
		if s == "mysql" {
			return errors.New("mysql: no")
		}
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "mysql: no") || !strings.Contains(err.Error(), "postfix not started: mysql did not start") {
		t.Fatalf("err = %v", err)
	}
	if _, ok := started["postfix"]; ok {
		t.Error("postfix started although mysql failed")
	}
	if _, ok := started["clamd"]; !ok {
		t.Error("clamd did not start, though it does not depend on mysql")
	}

	// A cycle ends, as Levels breaks it.
	cyc := map[string][]string{"a": {"b"}, "b": {"a"}, "c": nil}
	n := 0
	if err := inOrder(cyc, func(string) error { mu.Lock(); n++; mu.Unlock(); return nil }); err != nil || n != 3 {
		t.Fatalf("a cycle: %d started, %v", n, err)
	}
}

// TestFirstThenRest: the intake and what it depends on start before everything else; each service once; a failure in
// the first part keeps its dependents in the rest from starting.
func TestFirstThenRest(t *testing.T) {
	deps := map[string][]string{
		"unbound": nil,
		"clamd":   {"unbound"},
		"tlspol":  {"unbound"},
		"mysql":   nil,
		"postfix": {"mysql", "unbound", "tlspol"},
		"dovecot": {"mysql"},
		"watch":   {"postfix", "dovecot"},
	}
	var mu sync.Mutex
	var order []string
	ended := map[string]time.Time{}
	started := map[string]time.Time{}
	run := func(fail string) error {
		order, ended, started = nil, map[string]time.Time{}, map[string]time.Time{}
		return firstThenRest(deps, []string{"postfix", "absent"}, func(s string) error {
			mu.Lock()
			order = append(order, s)
			started[s] = time.Now()
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
			mu.Lock()
			ended[s] = time.Now()
			mu.Unlock()
			if s == fail {
				return errors.New(s + ": no")
			}
			return nil
		})
	}
	if err := run(""); err != nil {
		t.Fatal(err)
	}
	if len(order) != len(deps) {
		t.Fatalf("started %v; want each of the %d services once", order, len(deps))
	}
	for _, rest := range []string{"clamd", "dovecot", "watch"} {
		if started[rest].Before(ended["postfix"]) {
			t.Errorf("%s started before postfix had (order %v)", rest, order)
		}
	}
	for s, ds := range deps {
		for _, d := range ds {
			if started[s].Before(ended[d]) {
				t.Errorf("%s started before %s, which it depends on (order %v)", s, d, order)
			}
		}
	}

	// tlspol fails: postfix and watch do not start; the rest does; the error names both.
	err := run("tlspol")
	if err == nil || !strings.Contains(err.Error(), "tlspol: no") || !strings.Contains(err.Error(), "watch not started") {
		t.Fatalf("err = %v", err)
	}
	if _, ok := started["postfix"]; ok {
		t.Error("postfix started although tlspol failed")
	}
	if _, ok := started["watch"]; ok {
		t.Error("watch started although postfix did not")
	}
	if _, ok := started["dovecot"]; !ok {
		t.Error("dovecot did not start, though it does not depend on tlspol")
	}

	// No first: inOrder.
	order = nil
	if err := firstThenRest(deps, nil, func(s string) error { mu.Lock(); order = append(order, s); mu.Unlock(); return nil }); err != nil || len(order) != len(deps) {
		t.Fatalf("no first: %v, %v", order, err)
	}
}
