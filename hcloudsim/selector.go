package hcloudsim

import (
	"slices"
	"strings"
)

// selector is a parsed label_selector: a conjunction of requirements, as the API documents them:
// k=v, k==v, k!=v, k (present), !k (absent), k in (a,b), k notin (a,b).
type selector []requirement

type requirement struct {
	key    string
	op     string // "=", "!=", "exists", "!exists", "in", "notin"
	values []string
}

func parseSelector(s string) (selector, error) {
	var out selector
	for _, part := range splitTop(s) {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		var r requirement
		switch {
		case strings.Contains(part, " notin "), strings.Contains(part, " in "):
			op := "in"
			k, rest, _ := strings.Cut(part, " in ")
			if strings.Contains(part, " notin ") {
				op = "notin"
				k, rest, _ = strings.Cut(part, " notin ")
			}
			rest = strings.TrimSpace(rest)
			if !strings.HasPrefix(rest, "(") || !strings.HasSuffix(rest, ")") {
				return nil, badInput("invalid label_selector %q", s)
			}
			r = requirement{key: strings.TrimSpace(k), op: op}
			for _, v := range strings.Split(rest[1:len(rest)-1], ",") {
				r.values = append(r.values, strings.TrimSpace(v))
			}
		case strings.Contains(part, "!="):
			k, v, _ := strings.Cut(part, "!=")
			r = requirement{key: strings.TrimSpace(k), op: "!=", values: []string{strings.TrimSpace(v)}}
		case strings.Contains(part, "=="):
			k, v, _ := strings.Cut(part, "==")
			r = requirement{key: strings.TrimSpace(k), op: "=", values: []string{strings.TrimSpace(v)}}
		case strings.Contains(part, "="):
			k, v, _ := strings.Cut(part, "=")
			r = requirement{key: strings.TrimSpace(k), op: "=", values: []string{strings.TrimSpace(v)}}
		case strings.HasPrefix(part, "!"):
			r = requirement{key: strings.TrimSpace(part[1:]), op: "!exists"}
		default:
			r = requirement{key: part, op: "exists"}
		}
		if r.key == "" || strings.ContainsAny(r.key, " ()") {
			return nil, badInput("invalid label_selector %q", s)
		}
		out = append(out, r)
	}
	return out, nil
}

// splitTop splits on commas outside parentheses.
func splitTop(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

func (sel selector) match(labels map[string]string) bool {
	for _, r := range sel {
		v, ok := labels[r.key]
		switch r.op {
		case "=":
			if !ok || v != r.values[0] {
				return false
			}
		case "!=":
			if ok && v == r.values[0] {
				return false
			}
		case "exists":
			if !ok {
				return false
			}
		case "!exists":
			if ok {
				return false
			}
		case "in":
			if !ok || !slices.Contains(r.values, v) {
				return false
			}
		case "notin":
			if ok && slices.Contains(r.values, v) {
				return false
			}
		}
	}
	return true
}
