package mailprobe

import (
	"slices"
	"testing"
)

// A mail counts as acknowledged only for a 250 after the data's final dot: a 250 to RCPT does not count, nor a 451
// to the data.
func TestDataAccepted(t *testing.T) {
	const head = "=== Trying 203.0.113.100:25...\n<-  220 n1 ESMTP Postfix\n -> EHLO client\n<-  250 n1\n -> MAIL FROM:<p@c>\n<-  250 2.1.0 Ok\n -> RCPT TO:<lab@example.org>\n<-  250 2.1.5 Ok\n -> DATA\n<-  354 End data with <CR><LF>.<CR><LF>\n -> Subject: x\n -> \n -> body\n"
	for _, c := range []struct {
		transcript string
		want       bool
	}{
		{head + " -> .\n<-  250 2.0.0 Ok: queued as 4F1\n -> QUIT\n<-  221 2.0.0 Bye\n", true},
		{head + " -> .\n<** 451 4.3.0 Error: queue file write error\n -> QUIT\n", false},
		{head + "*** Remote host closed connection unexpectedly.\n", false},
		{"", false},
	} {
		if got := dataAccepted(c.transcript); got != c.want {
			t.Errorf("dataAccepted(…%q) = %v, want %v", c.transcript[max(0, len(c.transcript)-60):], got, c.want)
		}
	}
}

// The Message-ID is the envelope's last field (RFC 3501's envelope structure), as dovecot answers FETCH (ENVELOPE).
func TestEnvelopeMessageID(t *testing.T) {
	out := `* 1 FETCH (ENVELOPE ("Wed, 02 Dec 2026 11:44:59 +0000" "lab mail 154" ((NIL NIL "probe" "client.lab")) ((NIL NIL "probe" "client.lab")) ((NIL NIL "probe" "client.lab")) ((NIL NIL "lab" "example.org")) NIL NIL NIL "<lab-1-154@client.lab>"))
* 2 FETCH (ENVELOPE ("Wed, 02 Dec 2026 11:45:00 +0000" "a \"quoted\" <subject>" ((NIL NIL "probe" "client.lab")) ((NIL NIL "probe" "client.lab")) ((NIL NIL "probe" "client.lab")) ((NIL NIL "lab" "example.org")) NIL NIL "<parent@x>" "<lab-2-155@client.lab>"))
`
	var ids []string
	for _, m := range envelopeIDRE.FindAllStringSubmatch(out, -1) {
		ids = append(ids, m[1])
	}
	if want := []string{"<lab-1-154@client.lab>", "<lab-2-155@client.lab>"}; !slices.Equal(ids, want) {
		t.Errorf("Message-IDs %q, want %q", ids, want)
	}
	if m := existsRE.FindStringSubmatch("* FLAGS (\\Answered)\n* 183 EXISTS\n* 0 RECENT\n"); m == nil || m[1] != "183" {
		t.Errorf("EXISTS: %q", m)
	}
}
