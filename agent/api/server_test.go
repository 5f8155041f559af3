package api

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// A client that sends its headers and then trickles its body is cut off after Limits.Read, and no more than
// MaxConns connections are served at once. With only ReadHeaderTimeout (the servers before), the trickling client
// held its connection for as long as it liked.
func TestServerCutsSlowClients(t *testing.T) {
	l := Limits{ReadHeader: time.Second, Read: 500 * time.Millisecond, Write: time.Second, Idle: time.Second, MaxHeader: 4 << 10, MaxConns: 2}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := Server(h, l, slog.New(slog.DiscardHandler))
	go srv.Serve(Listener(ln, l))
	defer srv.Close()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "POST /peer/v1/demote HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var cut time.Duration
	for i := 0; i < 100; i++ {
		time.Sleep(100 * time.Millisecond)
		c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if _, err := c.Write([]byte("x")); err != nil {
			cut = time.Since(start)
			break
		}
		var b [64]byte
		if _, err := c.Read(b[:]); err != nil {
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				cut = time.Since(start) // the server answered and closed, or reset the connection
				break
			}
		}
	}
	if cut == 0 || cut > 3*time.Second {
		t.Fatalf("a client trickling its body kept its connection for %s", time.Since(start).Round(time.Millisecond))
	}
	t.Logf("a client trickling its body was cut off after %s", cut.Round(time.Millisecond))

	// Two idle connections hold both places; a third is accepted by the kernel but not served until one goes.
	for range 2 {
		h, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
	}
	time.Sleep(100 * time.Millisecond)
	third, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	io.WriteString(third, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	var b [16]byte
	if n, err := third.Read(b[:]); err == nil {
		t.Fatalf("a third connection was served while two were held: %q", b[:n])
	}
}
