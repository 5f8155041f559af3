package mailcowstub

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

type imapServer struct{ o Options }

// serveAny picks the protocol by port: IMAP on 143/993, POP3 on 110/995, ManageSieve on 4190.
func (s *imapServer) serveAny(ctx context.Context, c net.Conn, port int) {
	switch port {
	case 110, 995:
		s.pop3(ctx, c)
	case 4190:
		touch(c)
		fmt.Fprintf(c, "\"IMPLEMENTATION\" \"mailcow-stub\"\r\n\"SIEVE\" \"fileinto\"\r\nOK \"%s ready\"\r\n", s.o.Hostname)
		bufio.NewReader(c).ReadString('\n') // wait for LOGOUT or a close
	default:
		s.imap(ctx, c)
	}
}

// imap speaks enough IMAP4rev1 (RFC 3501) for `curl imap://` and an operator's checks: CAPABILITY, LOGIN, LIST,
// SELECT/EXAMINE, SEARCH, FETCH and UID FETCH over sequence sets (UID, FLAGS, RFC822.SIZE, BODY[] and
// BODY[HEADER.FIELDS (…)], with or without .PEEK; anything else is a BAD, never a wrong answer), NOOP, LOGOUT. Any password is accepted; the user name is the mailbox address.
func (s *imapServer) imap(ctx context.Context, c net.Conn) {
	touch(c)
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	out := func(format string, a ...any) bool {
		fmt.Fprintf(w, format+"\r\n", a...)
		return w.Flush() == nil
	}
	if !out("* OK [CAPABILITY IMAP4rev1] %s mailcow-stub ready", s.o.Hostname) {
		return
	}
	var user Maildir
	var msgs []string
	for ctx.Err() == nil {
		touch(c)
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		args := imapArgs(strings.TrimRight(line, "\r\n"))
		if len(args) < 2 {
			out("* BAD missing command")
			continue
		}
		tag, cmd, args := args[0], strings.ToUpper(args[1]), args[2:]
		uid := false
		if cmd == "UID" && len(args) > 0 {
			uid, cmd, args = true, strings.ToUpper(args[0]), args[1:]
		}
		switch {
		case cmd == "CAPABILITY":
			out("* CAPABILITY IMAP4rev1")
			out("%s OK CAPABILITY completed", tag)
		case cmd == "NOOP":
			out("%s OK NOOP completed", tag)
		case cmd == "LOGOUT":
			out("* BYE logging out")
			out("%s OK LOGOUT completed", tag)
			return
		case cmd == "LOGIN":
			if len(args) != 2 {
				out("%s BAD LOGIN user password", tag)
				continue
			}
			md, err := MailboxDir(s.o.VmailDir, args[0])
			if err != nil {
				out("%s NO [AUTHENTICATIONFAILED] %s", tag, err)
				continue
			}
			user = md
			out("%s OK [CAPABILITY IMAP4rev1] LOGIN completed", tag)
		case user == "":
			out("%s NO log in first", tag)
		case cmd == "LIST" || cmd == "LSUB":
			out(`* %s (\HasNoChildren) "/" INBOX`, cmd)
			out("%s OK %s completed", tag, cmd)
		case cmd == "SELECT" || cmd == "EXAMINE":
			if len(args) != 1 || !strings.EqualFold(args[0], "INBOX") {
				out("%s NO only INBOX exists", tag)
				continue
			}
			if msgs, err = user.Messages(); err != nil {
				out("%s NO %s", tag, err)
				continue
			}
			out("* %d EXISTS", len(msgs))
			out("* 0 RECENT")
			out(`* FLAGS (\Seen)`)
			out("* OK [UIDVALIDITY 1] UIDs valid")
			out("* OK [UIDNEXT %d] next UID", len(msgs)+1)
			out("%s OK [READ-ONLY] %s completed", tag, cmd)
		case msgs == nil && (cmd == "SEARCH" || cmd == "FETCH"):
			out("%s NO select a mailbox first", tag)
		case cmd == "SEARCH":
			nums := make([]string, len(msgs))
			for i := range msgs {
				nums[i] = strconv.Itoa(i + 1)
			}
			out("* SEARCH %s", strings.Join(nums, " "))
			out("%s OK SEARCH completed", tag)
		case cmd == "FETCH":
			if len(args) < 2 {
				out("%s BAD FETCH sequence-set data-items", tag)
				continue
			}
			nums, err := parseSeqSet(args[0], len(msgs), uid)
			if err != nil {
				out("%s BAD %s", tag, err)
				continue
			}
			items, err := parseFetchItems(strings.Join(args[1:], " "))
			if err != nil {
				out("%s BAD %s", tag, err)
				continue
			}
			failed := false
			for _, n := range nums {
				body, err := os.ReadFile(msgs[n-1])
				if err != nil {
					out("%s NO %s", tag, err)
					failed = true
					break
				}
				// UIDs are the message numbers: the stub never expunges. A UID FETCH answers with the UID always.
				parts := []string{}
				if uid {
					parts = append(parts, fmt.Sprintf("UID %d", n))
				}
				var literal []byte
				section := ""
				for _, it := range items {
					switch {
					case it.name == "UID":
						if !uid {
							parts = append(parts, fmt.Sprintf("UID %d", n))
						}
					case it.name == "FLAGS":
						parts = append(parts, "FLAGS ()")
					case it.name == "RFC822.SIZE":
						parts = append(parts, fmt.Sprintf("RFC822.SIZE %d", len(body)))
					default: // a section: its literal ends the answer (parseFetchItems allows one)
						literal = body
						if it.fields != nil {
							literal = headerFields(body, it.fields)
						}
						section = fmt.Sprintf("%s {%d}", it.name, len(literal))
					}
				}
				if section != "" {
					parts = append(parts, section)
				}
				fmt.Fprintf(w, "* %d FETCH (%s", n, strings.Join(parts, " "))
				if literal != nil {
					w.WriteString("\r\n")
					w.Write(literal)
				}
				out(")")
			}
			if failed {
				continue
			}
			if uid {
				out("%s OK UID FETCH completed", tag)
			} else {
				out("%s OK FETCH completed", tag)
			}
		default:
			out("%s BAD %s is not supported by the stub", tag, cmd)
		}
	}
}

// imapArgs splits an IMAP command line into atoms and quoted strings.
func imapArgs(line string) []string {
	var out []string
	for i := 0; i < len(line); {
		switch {
		case line[i] == ' ':
			i++
		case line[i] == '"':
			var b strings.Builder
			i++
			for i < len(line) && line[i] != '"' {
				if line[i] == '\\' && i+1 < len(line) {
					i++
				}
				b.WriteByte(line[i])
				i++
			}
			i++
			out = append(out, b.String())
		default:
			j := i
			depth := 0
			for j < len(line) && (line[j] != ' ' || depth > 0) {
				switch line[j] {
				case '(', '[':
					depth++
				case ')', ']':
					depth--
				}
				j++
			}
			out = append(out, line[i:j])
			i = j
		}
	}
	return out
}

// pop3 greets and answers the minimum (USER, PASS, STAT, QUIT), enough for a port probe and a login check.
func (s *imapServer) pop3(ctx context.Context, c net.Conn) {
	touch(c)
	r := bufio.NewReader(c)
	fmt.Fprintf(c, "+OK %s mailcow-stub POP3 ready\r\n", s.o.Hostname)
	for ctx.Err() == nil {
		touch(c)
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch strings.ToUpper(verb) {
		case "QUIT":
			fmt.Fprint(c, "+OK bye\r\n")
			return
		case "USER", "PASS", "NOOP":
			fmt.Fprint(c, "+OK\r\n")
		case "STAT":
			fmt.Fprint(c, "+OK 0 0\r\n")
		default:
			fmt.Fprint(c, "-ERR not supported by the stub\r\n")
		}
	}
}
