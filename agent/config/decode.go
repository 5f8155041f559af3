package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Parse decodes a TOML document strictly and validates it without touching the file system. name is how
// problems name the source. It returns every problem it finds; a syntax error stops it early, since nothing after
// it can be trusted. Use Check to add the checks that look at secret files.
func Parse(name string, data []byte) (Config, Problems) {
	cfg, idx, probs := decode(name, data)
	if idx == nil {
		return cfg, probs
	}
	return cfg, merge(probs, validate(name, &cfg, idx, nil))
}

// Check is Parse plus the checks of the files the configuration points to (secret files: present, mode 0600,
// owned by fs.Owner).
func Check(name string, data []byte, fsys FileChecker) (Config, Problems) {
	cfg, idx, probs := decode(name, data)
	if idx == nil {
		return cfg, probs
	}
	return cfg, merge(probs, validate(name, &cfg, idx, fsys))
}

func decode(name string, data []byte) (Config, lineIndex, Problems) {
	cfg := Defaults()
	src := string(data)
	var raw map[string]any
	md, err := toml.Decode(src, &raw)
	if err != nil {
		return cfg, nil, Problems{parseProblem(name, src, err)}
	}
	idx := indexLines(src)
	var probs Problems
	// checkShape reports and removes unknown keys and values of the wrong type, so that what is left decodes
	// cleanly and validation can report its own problems in the same run.
	checkShape(name, idx, reflect.TypeOf(cfg), raw, "", &probs)
	if keys := md.Keys(); len(keys) == 0 || keys[0].String() != "version" {
		probs = append(probs, Problem{File: name, Line: idx.line("version"), Key: "version",
			Msg: fmt.Sprintf("the first key must be version = %d", SchemaVersion)})
	}
	var clean bytes.Buffer
	if err := toml.NewEncoder(&clean).Encode(raw); err != nil {
		return cfg, idx, append(probs, Problem{File: name, Msg: "re-encode: " + err.Error()})
	}
	if _, err := toml.Decode(clean.String(), &cfg); err != nil {
		return cfg, idx, append(probs, parseProblem(name, clean.String(), err))
	}
	return cfg, idx, probs
}

// merge adds the validation problems whose key no decoding problem already covers: a key dropped for its
// type would otherwise also be reported as missing.
func merge(decoding, validation Problems) Problems {
	out := decoding
	for _, v := range validation {
		covered := false
		for _, d := range decoding {
			if d.Key != "" && (v.Key == d.Key || strings.HasPrefix(v.Key, d.Key+".") || strings.HasPrefix(v.Key, d.Key+"[")) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, v)
		}
	}
	return out
}

// parseProblem turns a TOML error into a problem. The line comes from the error's byte offset: the library's
// own line number counts a newline that ends a bad line as the start of the next one.
func parseProblem(name, src string, err error) Problem {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return Problem{File: name, Msg: err.Error()}
	}
	line := pe.Position.Line
	if s := pe.Position.Start; s > 0 && s <= len(src) {
		line = strings.Count(src[:s], "\n") + 1
	}
	return Problem{File: name, Line: line, Msg: "TOML syntax: " + redactTokens(pe.Message)}
}

// redactTokens hides what the TOML library quotes from the source in its message ("expected value but found
// \"abc…\" instead"): on a line such as `token = abc…`, that is an unquoted secret, and the message goes to the
// journal. Quoted text of up to two characters (an expected "=" or "]") stays.
func redactTokens(msg string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(msg, '"')
		if i < 0 {
			break
		}
		j := strings.IndexByte(msg[i+1:], '"')
		if j < 0 {
			break
		}
		b.WriteString(msg[:i])
		if j <= 2 {
			b.WriteString(msg[i : i+j+2])
		} else {
			b.WriteString("a token (not shown: it may be a secret)")
		}
		msg = msg[i+j+2:]
	}
	b.WriteString(msg)
	return b.String()
}

var (
	durationType = reflect.TypeOf(Duration(0))
	secretType   = reflect.TypeOf(Secret(""))
)

// checkShape walks the decoded TOML against the schema's types: every key must exist, every value must have the
// right type. It reports each problem with the key's line.
func checkShape(file string, idx lineIndex, t reflect.Type, m map[string]any, path string, probs *Problems) {
	fields := map[string]reflect.StructField{}
	var known []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("toml"), ",")[0]
		fields[tag] = f
		known = append(known, tag)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := joinKey(path, k)
		f, ok := fields[k]
		if !ok {
			msg := "unknown key"
			if s := closest(k, known); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			*probs = append(*probs, Problem{File: file, Line: idx.line(p), Key: p, Msg: msg})
			delete(m, k)
			continue
		}
		if !checkValue(file, idx, f.Type, m[k], p, probs) {
			delete(m, k)
		}
	}
}

// checkValue reports a value of the wrong type and returns whether the value may be kept.
func checkValue(file string, idx lineIndex, t reflect.Type, v any, p string, probs *Problems) bool {
	report := func(msg string) bool {
		*probs = append(*probs, Problem{File: file, Line: idx.line(p), Key: p, Msg: msg})
		return false
	}
	bad := func(want string) bool {
		return report(fmt.Sprintf("wrong type: want %s, got %s", want, tomlType(v)))
	}
	switch {
	case t == durationType:
		s, ok := v.(string)
		if !ok {
			return bad(`a duration string such as "30s"`)
		}
		if _, err := time.ParseDuration(strings.TrimSpace(s)); err != nil {
			return report(fmt.Sprintf("invalid duration %q: use a number with a unit, such as \"30s\" or \"1h\"", s))
		}
	case t == secretType || t.Kind() == reflect.String:
		if _, ok := v.(string); !ok {
			return bad("string")
		}
	case t.Kind() == reflect.Bool:
		if _, ok := v.(bool); !ok {
			return bad("boolean")
		}
	case t.Kind() == reflect.Int || t.Kind() == reflect.Int64:
		n, ok := v.(int64)
		if !ok {
			return bad("integer")
		}
		if t.Kind() == reflect.Int && (n > math.MaxInt32 || n < math.MinInt32) {
			return report("integer out of range")
		}
	case t.Kind() == reflect.Slice:
		items, ok := asList(v)
		if !ok {
			return bad("array")
		}
		keep := true
		for i, it := range items {
			keep = checkValue(file, idx, t.Elem(), it, fmt.Sprintf("%s[%d]", p, i), probs) && keep
		}
		return keep
	case t.Kind() == reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return bad("table")
		}
		keep := true
		for k, it := range m {
			keep = checkValue(file, idx, t.Elem(), it, joinKey(p, k), probs) && keep
		}
		return keep
	case t.Kind() == reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return bad("table")
		}
		checkShape(file, idx, t, m, p, probs)
	default:
		return bad(t.String())
	}
	return true
}

func asList(v any) ([]any, bool) {
	switch l := v.(type) {
	case []any:
		return l, true
	case []map[string]any:
		out := make([]any, len(l))
		for i := range l {
			out[i] = l[i]
		}
		return out, true
	}
	return nil, false
}

func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case time.Time:
		return "datetime"
	case []any, []map[string]any:
		return "array"
	case map[string]any:
		return "table"
	}
	return fmt.Sprintf("%T", v)
}

func joinKey(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// closest returns the known key nearest to k by edit distance, if it is near enough to be a typo.
func closest(k string, known []string) string {
	best, bestD := "", 3
	for _, c := range known {
		if d := editDistance(k, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
