package mailcowstub

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

type httpServer struct{ o Options }

// serve answers one HTTP/1.1 connection: / and /health name the host, so that a probe through the Floating IP
// shows which node answered.
func (s *httpServer) serve(_ context.Context, c net.Conn, _ int) {
	r := bufio.NewReader(c)
	for {
		touch(c)
		req, err := http.ReadRequest(r)
		if err != nil {
			return
		}
		body := fmt.Sprintf("mailcow-stub nginx on %s: ok\n", s.o.Hostname)
		status := http.StatusOK
		if req.URL.Path != "/" && req.URL.Path != "/health" {
			status, body = http.StatusNotFound, "not found\n"
		}
		resp := &http.Response{
			StatusCode: status, ProtoMajor: 1, ProtoMinor: 1, Request: req,
			Header:        http.Header{"Content-Type": {"text/plain; charset=utf-8"}, "Date": {time.Now().UTC().Format(http.TimeFormat)}},
			ContentLength: int64(len(body)),
			Body:          io.NopCloser(strings.NewReader(body)),
		}
		if err := resp.Write(c); err != nil || req.Close {
			return
		}
	}
}
