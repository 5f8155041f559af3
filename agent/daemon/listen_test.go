package daemon

import (
	"context"
	"net"
	"testing"
)

// The health API's listener on mailcow's network binds before that network (and its address) exists, as the
// "mailcow" host of api.listen needs; without freebind the same address is refused.
func TestListenFreebind(t *testing.T) {
	const addr = "192.0.2.1:0" // TEST-NET-1: on no interface here
	if ln, err := listenTCP(context.Background(), addr, false); err == nil {
		ln.Close()
		t.Skip("192.0.2.1 is an address of this machine")
	}
	ln, err := listenTCP(context.Background(), addr, true)
	if err != nil {
		t.Fatalf("freebind: %v", err)
	}
	defer ln.Close()
	if a := ln.Addr().(*net.TCPAddr); a.IP.String() != "192.0.2.1" || a.Port == 0 {
		t.Fatalf("listening on %v", a)
	}
}
