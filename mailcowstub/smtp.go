package mailcowstub

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"time"
)

const maxMessage = 10 << 20

type smtpServer struct{ o Options }

// serve speaks enough SMTP (RFC 5321) for real clients: HELO/EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
func (s *smtpServer) serve(ctx context.Context, c net.Conn, _ int) {
	touch(c)
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	reply := func(format string, a ...any) bool {
		fmt.Fprintf(w, format+"\r\n", a...)
		return w.Flush() == nil
	}
	if !reply("220 %s ESMTP mailcow-stub", s.o.Hostname) {
		return
	}
	var from string
	var rcpts []string
	for ctx.Err() == nil {
		touch(c)
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "HELO":
			reply("250 %s", s.o.Hostname)
		case "EHLO":
			reply("250-%s\r\n250-PIPELINING\r\n250-SIZE %d\r\n250 8BITMIME", s.o.Hostname, maxMessage)
		case "MAIL":
			a, ok := pathArg(arg, "FROM:")
			if !ok {
				reply("501 5.5.4 syntax: MAIL FROM:<address>")
				continue
			}
			from, rcpts = a, nil
			reply("250 2.1.0 Ok")
		case "RCPT":
			a, ok := pathArg(arg, "TO:")
			if !ok || a == "" {
				reply("501 5.5.4 syntax: RCPT TO:<address>")
				continue
			}
			if _, err := MailboxDir(s.o.VmailDir, a); err != nil {
				reply("550 5.1.1 %s", err)
				continue
			}
			rcpts = append(rcpts, a)
			reply("250 2.1.5 Ok")
		case "DATA":
			if len(rcpts) == 0 {
				reply("503 5.5.1 need RCPT first")
				continue
			}
			if !reply("354 End data with <CR><LF>.<CR><LF>") {
				return
			}
			msg, err := readData(r)
			if err != nil {
				reply("552 5.3.4 %s", err)
				return
			}
			id, err := s.deliver(c, from, rcpts, msg)
			if err != nil {
				s.o.Logger.Error("delivery failed", "err", err)
				reply("451 4.3.0 %s", err)
			} else {
				s.o.Logger.Info("delivered", "id", id, "from", from, "to", strings.Join(rcpts, ","), "bytes", len(msg))
				reply("250 2.0.0 Ok: queued as %s", id)
			}
			from, rcpts = "", nil
		case "RSET":
			from, rcpts = "", nil
			reply("250 2.0.0 Ok")
		case "NOOP":
			reply("250 2.0.0 Ok")
		case "QUIT":
			reply("221 2.0.0 Bye")
			return
		default:
			reply("502 5.5.2 command not recognized")
		}
	}
}

// deliver stores the message in every recipient's Maildir; it returns only after each copy is on disk.
func (s *smtpServer) deliver(c net.Conn, from string, rcpts []string, msg []byte) (string, error) {
	var id string
	for _, rc := range rcpts {
		md, err := MailboxDir(s.o.VmailDir, rc)
		if err != nil {
			return "", err
		}
		hdr := fmt.Sprintf("Return-Path: <%s>\r\nDelivered-To: %s\r\nReceived: from %s by %s (mailcow-stub); %s\r\n",
			from, rc, c.RemoteAddr(), s.o.Hostname, time.Now().UTC().Format(time.RFC1123Z))
		name, err := md.Deliver(append([]byte(hdr), msg...), s.o.Hostname)
		if err != nil {
			return "", err
		}
		if id == "" {
			id = name[:20]
		}
	}
	return id, nil
}

// pathArg parses "FROM:<a@b> SIZE=1" into "a@b".
func pathArg(arg, prefix string) (string, bool) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", false
	}
	rest := strings.TrimSpace(arg[len(prefix):])
	if !strings.HasPrefix(rest, "<") {
		return "", false
	}
	end := strings.IndexByte(rest, '>')
	if end < 0 {
		return "", false
	}
	return rest[1:end], true
}

// readData reads the DATA section up to the lone dot, undoing dot-stuffing.
func readData(r *bufio.Reader) ([]byte, error) {
	var buf bytes.Buffer
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return nil, fmt.Errorf("reading DATA: %w", err)
		}
		t := bytes.TrimRight(line, "\r\n")
		if bytes.Equal(t, []byte(".")) {
			return buf.Bytes(), nil
		}
		if bytes.HasPrefix(t, []byte(".")) {
			t = t[1:]
		}
		if buf.Len()+len(t) > maxMessage {
			return nil, fmt.Errorf("message exceeds %d bytes", maxMessage)
		}
		buf.Write(t)
		buf.WriteString("\r\n")
	}
}
