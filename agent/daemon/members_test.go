package daemon

import (
	"strings"
	"testing"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
)

// A running agent says once what changed in the membership, says it again only when the difference changes, and
// is quiet when the API lists its members again.
func TestMembersNote(t *testing.T) {
	running := []config.Member{{Name: "mx1", ServerID: 1, PrivateIP: "10.0.0.2", Role: "member", Priority: 150, Bootstrap: true},
		{Name: "mx2", ServerID: 2, PrivateIP: "10.0.0.3", Role: "member", Priority: 140}}
	added := append(append([]config.Member{}, running...), config.Member{Name: "mx3", ServerID: 3, PrivateIP: "10.0.0.4", Role: "member", Priority: 130})
	msg, key := membersNote(running, added, "")
	if !strings.Contains(msg, "mx3 (server 3, 10.0.0.4) joined") || !strings.Contains(msg, "restart the agents one at a time") || key == "" {
		t.Fatalf("a member added: %q %q", msg, key)
	}
	if _, again := membersNote(running, added, key); again != key {
		t.Fatal("the same difference got another key: it would be reported twice")
	}
	moved := append([]config.Member{}, running...)
	moved[1].PrivateIP = "10.0.0.9"
	if msg, k := membersNote(running, moved, key); k == key || !strings.Contains(msg, "mx2 changed (server 2 → 2, 10.0.0.3 → 10.0.0.9") {
		t.Fatalf("an address changed: %q", msg)
	}
	if msg, k := membersNote(running, running, key); msg != "" || k != "" {
		t.Fatalf("the same members: %q %q", msg, k)
	}
}
