package config

// This file layers one configuration document on another: settings that every node shares written on top of a
// generated user-data (`cluster create --config`), or a lab node's paths on top of its server's user-data.

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// Layer sets every key of over in base, table into table; a key that is a table in both is layered, anything else
// is replaced.
func Layer(base, over map[string]any) {
	for k, v := range over {
		if o, ok := v.(map[string]any); ok {
			if b, ok := base[k].(map[string]any); ok {
				Layer(b, o)
				continue
			}
		}
		base[k] = v
	}
}

// Keys lists the dotted keys a document sets (tables are walked, arrays of tables are one key), sorted.
func Keys(doc map[string]any) []string {
	out := slices.Collect(maps.Keys(Leaves(doc)))
	slices.Sort(out)
	return out
}

// Leaves maps each dotted key of a document whose value is not a table (such as "failover.breaker.max") to its
// value.
func Leaves(doc map[string]any) map[string]any {
	out := map[string]any{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			out[prefix+k] = v
		}
	}
	walk("", doc)
	return out
}

// Encode writes a document as TOML after the header lines (each given without its "# "); version comes first, as
// Parse wants it.
func Encode(doc map[string]any, header ...string) (string, error) {
	var b bytes.Buffer
	for _, h := range header {
		fmt.Fprintf(&b, "# %s\n", strings.TrimSpace(h))
	}
	rest := maps.Clone(doc)
	if v, ok := rest["version"]; ok {
		fmt.Fprintf(&b, "version = %v\n\n", v)
		delete(rest, "version")
	}
	if err := toml.NewEncoder(&b).Encode(rest); err != nil {
		return "", err
	}
	return b.String(), nil
}
