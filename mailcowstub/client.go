package mailcowstub

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The client side of the stub's protocols, for the lab and the VM tests: they dial (each in its own network) and
// hand over the connection with its deadline set; Send and Mailbox close it.

// Send sends one message over SMTP on conn from from to rcpt, with the Message-ID id. nil means that the server
// answered 250 to the data: the message is stored (the stub's postfix fsyncs before it answers).
func Send(conn net.Conn, host, from, rcpt, id, subject string) error {
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if err := c.Mail(from); err != nil {
		return err
	}
	if err := c.Rcpt(rcpt); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "From: %s\r\nTo: %s\r\nMessage-ID: %s\r\nSubject: %s\r\n\r\nsent at %s\r\n",
		from, rcpt, id, subject, time.Now().UTC().Format(time.RFC3339Nano))
	if err := w.Close(); err != nil { // the 250 (or not) arrives here
		return err
	}
	c.Quit()
	return nil
}

var (
	literal   = regexp.MustCompile(`\{(\d+)\}\r\n$`)
	messageID = regexp.MustCompile(`(?im)^Message-ID:\s*(<[^>]+>)`)
)

// Mailbox returns the Message-IDs of every message in user's INBOX over IMAP on conn: LOGIN, SELECT, one FETCH
// n BODY[] per message, LOGOUT.
func Mailbox(conn net.Conn, user, password string) ([]string, error) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil {
		return nil, err
	}
	cmd := func(tag, line string) ([]string, error) {
		if _, err := fmt.Fprintf(conn, "%s %s\r\n", tag, line); err != nil {
			return nil, err
		}
		var lines []string
		for {
			s, err := r.ReadString('\n')
			if err != nil {
				return nil, err
			}
			if m := literal.FindStringSubmatch(s); m != nil {
				n, _ := strconv.Atoi(m[1])
				buf := make([]byte, n)
				if _, err := io.ReadFull(r, buf); err != nil {
					return nil, err
				}
				s += string(buf)
			}
			lines = append(lines, s)
			if strings.HasPrefix(s, tag+" ") {
				if !strings.HasPrefix(s, tag+" OK") {
					return lines, fmt.Errorf("imap %s: %s", strings.Fields(line)[0], strings.TrimSpace(s))
				}
				return lines, nil
			}
		}
	}
	if _, err := cmd("a", "LOGIN "+user+" "+password); err != nil {
		return nil, err
	}
	lines, err := cmd("b", "SELECT INBOX")
	if err != nil {
		return nil, err
	}
	exists := 0
	for _, s := range lines {
		var n int
		if _, err := fmt.Sscanf(s, "* %d EXISTS", &n); err == nil {
			exists = n
		}
	}
	var ids []string
	for i := 1; i <= exists; i++ {
		lines, err := cmd("c"+strconv.Itoa(i), fmt.Sprintf("FETCH %d BODY[]", i))
		if err != nil {
			return nil, err
		}
		for _, s := range lines {
			if m := messageID.FindStringSubmatch(s); m != nil {
				ids = append(ids, m[1])
			}
		}
	}
	cmd("z", "LOGOUT")
	return ids, nil
}
