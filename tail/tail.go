// Package tail cuts a long output (a command's, a log file's) to its end for an error message or a test's log: the
// end is where a failing program says why.
package tail

import "strings"

// Lines returns the last n lines of s, without a trailing newline.
func Lines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// Bytes returns the last n bytes of s, trimmed of surrounding white space, with "…" in front when it cut.
func Bytes(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
