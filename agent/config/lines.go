package config

import (
	"strconv"
	"strings"
)

// lineIndex maps key paths (cluster.nodes[1].private_ip) to the line that defines them. The TOML library reports
// the line of syntax and type errors only, so validation finds the lines of its own problems here. It reads
// tables, arrays of tables, plain and dotted keys; a key inside an inline table is found through its parent.
type lineIndex map[string]int

func indexLines(src string) lineIndex {
	idx := lineIndex{}
	arrays := map[string]int{} // raw header path -> element count
	prefix := ""
	inMulti := "" // the delimiter of an open multi-line string
	for n, raw := range strings.Split(src, "\n") {
		line := strings.TrimSpace(raw)
		if inMulti != "" {
			if strings.Contains(line, inMulti) {
				inMulti = ""
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		if strings.HasPrefix(line, "[[") {
			end := strings.Index(line, "]]")
			if end < 0 {
				continue
			}
			rawPath := normKey(line[2:end])
			arrays[rawPath]++
			prefix = resolve(rawPath, arrays)
			if _, ok := idx[prefix]; !ok {
				idx[prefix] = n + 1
			}
			if _, ok := idx[rawPath]; !ok {
				idx[rawPath] = n + 1
			}
			continue
		}
		if line[0] == '[' {
			end := strings.Index(line, "]")
			if end < 0 {
				continue
			}
			prefix = resolve(normKey(line[1:end]), arrays)
			if _, ok := idx[prefix]; !ok {
				idx[prefix] = n + 1
			}
			continue
		}
		eq := keyEnd(line)
		if eq < 0 {
			continue
		}
		key := normKey(line[:eq])
		if key == "" {
			continue
		}
		full := key
		if prefix != "" {
			full = prefix + "." + key
		}
		if _, ok := idx[full]; !ok {
			idx[full] = n + 1
		}
		val := line[eq+1:]
		for _, d := range []string{`"""`, `'''`} {
			if strings.Count(val, d)%2 == 1 {
				inMulti = d
			}
		}
	}
	return idx
}

// resolve turns a header path into an indexed path: the current element of each array of tables on the way.
func resolve(rawPath string, arrays map[string]int) string {
	parts := strings.Split(rawPath, ".")
	var out, acc []string
	for _, p := range parts {
		acc = append(acc, p)
		seg := p
		if c, ok := arrays[strings.Join(acc, ".")]; ok && c > 0 {
			seg += "[" + strconv.Itoa(c-1) + "]"
		}
		out = append(out, seg)
	}
	return strings.Join(out, ".")
}

// keyEnd returns the index of the '=' that ends the key, skipping quoted key parts.
func keyEnd(line string) int {
	quote := byte(0)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '=':
			return i
		}
	}
	return -1
}

// normKey trims blanks and quotes around each dotted part.
func normKey(k string) string {
	parts := strings.Split(k, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}

// line returns the line of key, or of its nearest ancestor present in the file, or 0.
func (idx lineIndex) line(key string) int {
	for key != "" {
		if n, ok := idx[key]; ok {
			return n
		}
		cut := strings.LastIndexAny(key, ".[")
		if cut < 0 {
			return 0
		}
		key = key[:cut]
	}
	return 0
}
