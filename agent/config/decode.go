package config

import (
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
	if len(probs) > 0 {
		return cfg, probs
	}
	return cfg, validate(name, &cfg, idx, nil)
}

// Check is Parse plus the checks of the files the configuration points to (secret files: present, mode 0600,
// owned by fs.Owner).
func Check(name string, data []byte, fsys FileChecker) (Config, Problems) {
	cfg, idx, probs := decode(name, data)
	if len(probs) > 0 {
		return cfg, probs
	}
	return cfg, validate(name, &cfg, idx, fsys)
}

func decode(name string, data []byte) (Config, lineIndex, Problems) {
	cfg := Defaults()
	src := string(data)
	var raw map[string]any
	md, err := toml.Decode(src, &raw)
	if err != nil {
		return cfg, nil, Problems{parseProblem(name, err)}
	}
	idx := indexLines(src)
	var probs Problems
	checkShape(name, idx, reflect.TypeOf(cfg), raw, "", &probs)
	if keys := md.Keys(); len(keys) == 0 || keys[0].String() != "version" {
		probs = append(probs, Problem{File: name, Line: idx.line("version"), Key: "version",
			Msg: fmt.Sprintf("the first key must be version = %d", SchemaVersion)})
	}
	if len(probs) > 0 {
		return cfg, idx, probs
	}
	if _, err := toml.Decode(src, &cfg); err != nil {
		return cfg, idx, Problems{parseProblem(name, err)}
	}
	return cfg, idx, nil
}

func parseProblem(name string, err error) Problem {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return Problem{File: name, Line: pe.Position.Line, Key: pe.LastKey, Msg: "TOML syntax: " + pe.Message}
	}
	return Problem{File: name, Msg: err.Error()}
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
			continue
		}
		checkValue(file, idx, f.Type, m[k], p, probs)
	}
}

func checkValue(file string, idx lineIndex, t reflect.Type, v any, p string, probs *Problems) {
	bad := func(want string) {
		*probs = append(*probs, Problem{File: file, Line: idx.line(p), Key: p,
			Msg: fmt.Sprintf("wrong type: want %s, got %s", want, tomlType(v))})
	}
	switch {
	case t == durationType:
		s, ok := v.(string)
		if !ok {
			bad(`a duration string such as "30s"`)
			return
		}
		if _, err := time.ParseDuration(strings.TrimSpace(s)); err != nil {
			*probs = append(*probs, Problem{File: file, Line: idx.line(p), Key: p,
				Msg: fmt.Sprintf("invalid duration %q: use a number with a unit, such as \"30s\" or \"1h\"", s)})
		}
	case t == secretType || t.Kind() == reflect.String:
		if _, ok := v.(string); !ok {
			bad("string")
		}
	case t.Kind() == reflect.Bool:
		if _, ok := v.(bool); !ok {
			bad("boolean")
		}
	case t.Kind() == reflect.Int || t.Kind() == reflect.Int64:
		n, ok := v.(int64)
		if !ok {
			bad("integer")
			return
		}
		if t.Kind() == reflect.Int && (n > math.MaxInt32 || n < math.MinInt32) {
			*probs = append(*probs, Problem{File: file, Line: idx.line(p), Key: p, Msg: "integer out of range"})
		}
	case t.Kind() == reflect.Slice:
		items, ok := asList(v)
		if !ok {
			bad("array")
			return
		}
		for i, it := range items {
			checkValue(file, idx, t.Elem(), it, fmt.Sprintf("%s[%d]", p, i), probs)
		}
	case t.Kind() == reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			bad("table")
			return
		}
		checkShape(file, idx, t, m, p, probs)
	default:
		bad(t.String())
	}
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
