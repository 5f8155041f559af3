package daemon

// The warm start of a takeover, as the executor runs it: before the mount, the containers that need nothing of the
// Volume; a stop waits for the warm starts under way.

import "context"

// stackWarmer is a Stack that can start, before the mount, the containers that need nothing of the Volume
// (agent/stack.Stack.Warm).
type stackWarmer interface {
	Warm(ctx context.Context) error
}

// warm runs the stack's warm start, when it has one.
func (e *Executor) warm(ctx context.Context) error {
	if w, ok := e.Stack.(stackWarmer); ok {
		return w.Warm(ctx)
	}
	return nil
}

// warmBegins notes transition tid's warm start as under way.
func (e *Executor) warmBegins(tid int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.warms == nil {
		e.warms = map[int]chan struct{}{}
	}
	if _, ok := e.warms[tid]; !ok {
		e.warms[tid] = make(chan struct{})
	}
}

// warmEnds notes transition tid's warm start as ended.
func (e *Executor) warmEnds(tid int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ch, ok := e.warms[tid]; ok {
		close(ch)
		delete(e.warms, tid)
	}
}

// waitWarms waits for every warm start under way.
func (e *Executor) waitWarms() {
	e.mu.Lock()
	var warms []chan struct{}
	for _, ch := range e.warms {
		warms = append(warms, ch)
	}
	e.mu.Unlock()
	for _, ch := range warms {
		<-ch
	}
}
