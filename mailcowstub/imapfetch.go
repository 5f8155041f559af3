package mailcowstub

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// fetchItem is one FETCH data item the stub serves (RFC 3501, section 6.4.5): UID, FLAGS, RFC822.SIZE, BODY[] and
// BODY[HEADER.FIELDS (…)], each section also as BODY.PEEK.
type fetchItem struct {
	name   string   // the item as the answer names it: UID, FLAGS, RFC822.SIZE, BODY[] or BODY[HEADER.FIELDS (…)]
	fields []string // the header fields of a HEADER.FIELDS section
}

var fetchItemRe = regexp.MustCompile(`(?i)^(UID|FLAGS|RFC822\.SIZE|BODY(?:\.PEEK)?\[(?:HEADER\.FIELDS \(([^)]*)\))?\])(?:\s+|$)`)

// parseFetchItems reads a FETCH command's data items: one item, or a parenthesized list.
func parseFetchItems(s string) ([]fetchItem, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "(") && strings.HasSuffix(s, ")") {
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	var items []fetchItem
	for s != "" {
		m := fetchItemRe.FindStringSubmatch(s)
		if m == nil {
			return nil, fmt.Errorf("the stub does not serve the data item %q", strings.Fields(s)[0])
		}
		name := strings.ToUpper(m[1])
		it := fetchItem{name: strings.Replace(name, "BODY.PEEK[", "BODY[", 1)}
		if m[2] != "" {
			it.fields = strings.Fields(strings.ToUpper(m[2]))
			it.name = "BODY[HEADER.FIELDS (" + strings.Join(it.fields, " ") + ")]"
		}
		items = append(items, it)
		s = s[len(m[0]):]
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("no data items")
	}
	sections := 0
	for _, it := range items {
		if strings.HasPrefix(it.name, "BODY[") {
			sections++
		}
	}
	if sections > 1 {
		return nil, fmt.Errorf("the stub serves one body section per FETCH")
	}
	return items, nil
}

// parseSeqSet reads a sequence set ("1", "2:4", "1:*", "1,3:5") over messages 1..last. A number beyond last is
// an error for message numbers; for UIDs (uid) it selects nothing, as UIDs that do not exist do.
func parseSeqSet(s string, last int, uid bool) ([]int, error) {
	num := func(a string) (int, error) {
		if a == "*" {
			return last, nil
		}
		n, err := strconv.Atoi(a)
		if err != nil || n < 1 {
			return 0, fmt.Errorf("invalid sequence set %q", s)
		}
		return n, nil
	}
	var out []int
	seen := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		a, b, isRange := strings.Cut(part, ":")
		lo, err := num(a)
		if err != nil {
			return nil, err
		}
		hi := lo
		if isRange {
			if hi, err = num(b); err != nil {
				return nil, err
			}
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		// lo is 0 only for "*" in an empty mailbox: an error for message numbers, nothing for UIDs (hence max below).
		if !uid && (hi > last || lo < 1) {
			return nil, fmt.Errorf("invalid sequence set %q: the mailbox has %d messages", s, last)
		}
		for n := max(lo, 1); n <= min(hi, last); n++ {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	return out, nil
}

// headerFields returns the header lines of msg whose field is one of names (continuation lines included), and the
// blank line that ends the section, as BODY[HEADER.FIELDS (…)] does.
func headerFields(msg []byte, names []string) []byte {
	head, _, _ := bytes.Cut(bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n")), []byte("\n\n"))
	var out bytes.Buffer
	keep := false
	for _, line := range strings.Split(string(head), "\n") {
		if line == "" {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			field, _, _ := strings.Cut(line, ":")
			keep = false
			for _, n := range names {
				if strings.EqualFold(strings.TrimSpace(field), n) {
					keep = true
				}
			}
		}
		if keep {
			out.WriteString(line + "\r\n")
		}
	}
	out.WriteString("\r\n")
	return out.Bytes()
}
