package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// schemaKeys lists every key of the schema as a dotted path, array elements without an index.
func schemaKeys(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		k := joinKey(prefix, strings.Split(f.Tag.Get("toml"), ",")[0])
		ft := f.Type
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			out = append(out, k)
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != durationType {
			out = append(out, schemaKeys(ft, k)...)
			continue
		}
		out = append(out, k)
	}
	return out
}

func TestDocListsEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	keys := schemaKeys(reflect.TypeOf(Config{}), "")
	if len(keys) < 50 {
		t.Fatalf("only %d schema keys found: the walk is broken", len(keys))
	}
	for _, k := range keys {
		if !strings.Contains(string(doc), "| `"+k+"` |") {
			t.Errorf("docs/config.md has no row for %s", k)
		}
	}
}
