package api

// The agent's HTTP servers, hardened against slow and greedy clients: anything on the private network may
// connect.

import (
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// Limits bound what one client may hold of a server.
type Limits struct {
	ReadHeader time.Duration // the request's headers
	Read       time.Duration // the whole request, body included: a client that trickles a body is cut off
	Write      time.Duration // the answer; 0 for the peer API, whose demote answer waits for the demotion
	Idle       time.Duration // a kept-alive connection between requests
	MaxHeader  int           // bytes of request headers
	MaxConns   int           // connections at once; the rest wait in the kernel's backlog
}

// PeerLimits are the peer API's: its requests are small and come from a handful of peers, but a demote request
// is answered only when the demotion is done (up to failover.fence_timeout), so the answer has no write limit.
var PeerLimits = Limits{ReadHeader: 5 * time.Second, Read: 10 * time.Second, Idle: 30 * time.Second, MaxHeader: 8 << 10, MaxConns: 64}

// PublicLimits are the probes' and metrics': small requests, quick answers.
var PublicLimits = Limits{ReadHeader: 5 * time.Second, Read: 10 * time.Second, Write: 30 * time.Second, Idle: 30 * time.Second, MaxHeader: 8 << 10, MaxConns: 64}

// Server returns an http.Server for h with the limits l, logging the server's own errors to log at warning.
func Server(h http.Handler, l Limits, log *slog.Logger) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: l.ReadHeader, ReadTimeout: l.Read, WriteTimeout: l.Write,
		IdleTimeout: l.Idle, MaxHeaderBytes: l.MaxHeader, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
}

// Listener limits ln to l.MaxConns connections at once (golang.org/x/net/netutil).
func Listener(ln net.Listener, l Limits) net.Listener {
	if l.MaxConns <= 0 {
		return ln
	}
	return netutil.LimitListener(ln, l.MaxConns)
}
