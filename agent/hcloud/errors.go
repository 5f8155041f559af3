package hcloud

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"
)

// Kind says what to do about an error from the API.
type Kind int

// The three kinds of errors (docs/design.md §4).
const (
	// RetryFast: the resource is busy (locked, conflict) or an action is still running: try again soon.
	RetryFast Kind = iota + 1
	// RetrySlow: the API is overloaded or unreachable (5xx, timeouts, rate_limit_exceeded): back off.
	RetrySlow
	// Fatal: retrying cannot help (unauthorized, forbidden, not_found, resource_unavailable,
	// user_action_required, volume_already_attached to an unexpected server, a failed action): alert and refuse.
	Fatal
)

func (k Kind) String() string {
	switch k {
	case RetryFast:
		return "retry_fast"
	case RetrySlow:
		return "retry_slow"
	case Fatal:
		return "fatal"
	}
	return "none"
}

// Error is an API error with its kind. It never holds the token; it keeps Hetzner's correlation id.
type Error struct {
	Op            string        // the adapter operation, such as "assign_floating_ip"
	Kind          Kind          //
	Code          string        // the API's error code, or the action's, or "network", "timeout", "http_<status>"
	CorrelationID string        // X-Correlation-Id of the answer, for Hetzner's support
	RetryAfter    time.Duration // from RateLimit-Reset when the rate limit is exhausted
	Err           error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("hcloud %s: %s (%s)", e.Op, e.Err, e.Kind)
	if e.CorrelationID != "" {
		s += " correlation_id=" + e.CorrelationID
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the kind of err, or 0 when err is nil or not from this package.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

// ErrUnexpectedOwner means that a Volume or a Floating IP belongs to another server than the one the caller
// expected: somebody else moved it, so the agent must not touch it.
var ErrUnexpectedOwner = errors.New("owned by an unexpected server")

// ErrActionRunning means that an action did not finish before the deadline.
var ErrActionRunning = errors.New("action still running")

var fastCodes = map[hc.ErrorCode]bool{hc.ErrorCodeLocked: true, hc.ErrorCodeConflict: true}

var slowCodes = map[hc.ErrorCode]bool{
	hc.ErrorCodeRateLimitExceeded: true, hc.ErrorCodeServerError: true, hc.ErrorCodeServiceError: true,
	hc.ErrorCodeBadGateway: true, hc.ErrorCodeTimeout: true, hc.ErrorCodeMaintenance: true,
	hc.ErrorCodeRobotUnavailable: true, "unavailable": true, hc.ErrorCodeUnknownError: true,
}

// classify wraps err from operation op into an *Error with its kind.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		if e.Op == "" {
			e.Op = op
		}
		return e
	}
	out := &Error{Op: op, Err: err}
	var apiErr hc.Error
	var actErr hc.ActionError
	var netErr net.Error
	switch {
	case errors.As(err, &apiErr):
		out.Code = string(apiErr.Code)
		if resp := apiErr.Response(); resp != nil && resp.Response != nil {
			out.CorrelationID = resp.Header.Get("X-Correlation-Id")
			out.RetryAfter = retryAfter(apiErr.Code, resp.Meta.Ratelimit)

		}
		switch {
		case fastCodes[apiErr.Code]:
			out.Kind = RetryFast
		case slowCodes[apiErr.Code]:
			out.Kind = RetrySlow
		default:
			out.Kind = Fatal
		}
	case errors.As(err, &actErr):
		out.Code, out.Kind = actErr.Code, Fatal
	case errors.Is(err, ErrActionRunning):
		out.Code, out.Kind = "action_running", RetryFast
	case errors.Is(err, ErrUnexpectedOwner):
		out.Code, out.Kind = "unexpected_owner", Fatal
	case errors.Is(err, hc.ErrStatusCode):
		out.Code, out.Kind = "http_error", Fatal
		if s := statusOf(err); s >= 500 {
			out.Code, out.Kind = fmt.Sprintf("http_%d", s), RetrySlow
		}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		out.Code, out.Kind = "timeout", RetrySlow
	case errors.As(err, &netErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		out.Code, out.Kind = "network", RetrySlow
	default:
		out.Code, out.Kind = "unknown", RetrySlow
	}
	return out
}

// retryAfter is how long until the rate limit lets one request through. RateLimit-Reset is when the bucket
// will be full again, not when the next request may go: the bucket refills evenly, so one request comes back
// after (reset - now) / (limit - remaining).
func retryAfter(code hc.ErrorCode, rl hc.Ratelimit) time.Duration {
	if code != hc.ErrorCodeRateLimitExceeded || rl.Reset.IsZero() || rl.Limit <= rl.Remaining {
		return 0
	}
	return max(0, time.Until(rl.Reset)/time.Duration(rl.Limit-rl.Remaining))
}

// statusOf reads the HTTP status from hcloud-go's ErrStatusCode error ("... status code 503"), which has no
// typed field for it.
func statusOf(err error) int {
	msg := err.Error()
	n, _ := strconv.Atoi(msg[strings.LastIndexByte(msg, ' ')+1:])
	return n
}
