package report

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mailcow-ha/mailcow-ha/agent/event"
)

var update = flag.Bool("update", false, "rewrite the event table in docs/journal.md")

// The catalog is consistent: unique names and MESSAGE_IDs, known severities.
func TestCatalog(t *testing.T) {
	names, ids := map[event.Name]bool{}, map[string]bool{}
	for _, e := range Catalog() {
		if names[e.Name] {
			t.Errorf("%s twice", e.Name)
		}
		names[e.Name] = true
		id := MessageID(e.Name)
		if len(id) != 32 || ids[id] {
			t.Errorf("%s: MESSAGE_ID %q", e.Name, id)
		}
		ids[id] = true
		if !slices.Contains([]string{SeverityInfo, SeverityWarning, SeverityCritical}, e.Severity) || e.Doc == "" {
			t.Errorf("%s: severity %q, doc %q", e.Name, e.Severity, e.Doc)
		}
	}
	// Stable across versions: a changed derivation would break every saved journalctl query.
	if got := MessageID("failover_started"); got != "3d99c858e2df57d642660188b912394c" {
		t.Errorf("MessageID(failover_started) = %s: the derivation changed", got)
	}
}

// Every event name is a constant of agent/event, so the compiler checks each name the code reports. The catalog
// lists exactly those constants: none missing, none extra (the constants are read from their file with go/ast).
func TestCatalogListsEveryName(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "../event/names.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[event.Name]bool{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			for _, v := range spec.(*ast.ValueSpec).Values {
				if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					name, _ := strconv.Unquote(lit.Value)
					consts[event.Name(name)] = true
				}
			}
		}
	}
	if len(consts) < 40 {
		t.Fatalf("only %d constants read from agent/event", len(consts))
	}
	listed := map[event.Name]bool{}
	for _, e := range Catalog() {
		listed[e.Name] = true
		if !consts[e.Name] {
			t.Errorf("catalog event %q is not a constant of agent/event", e.Name)
		}
	}
	for c := range consts {
		if !listed[c] {
			t.Errorf("agent/event names %q, which the catalog does not list", c)
		}
	}
}

const beginMark, endMark = "<!-- events:begin (go test ./agent/report -update) -->\n", "<!-- events:end -->\n"

// docs/journal.md lists every event with its severity and MESSAGE_ID.
func TestJournalDocListsEvents(t *testing.T) {
	var b strings.Builder
	b.WriteString("| event | severity | MESSAGE_ID | meaning |\n|---|---|---|---|\n")
	for _, e := range Catalog() {
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s |\n", e.Name, e.Severity, MessageID(e.Name), e.Doc)
	}
	path := "../../docs/journal.md"
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	before, rest, ok1 := strings.Cut(string(doc), beginMark)
	_, after, ok2 := strings.Cut(rest, endMark)
	if !ok1 || !ok2 {
		t.Fatalf("%s lacks the event table markers", path)
	}
	want := before + beginMark + b.String() + endMark + after
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if string(doc) != want {
		t.Errorf("%s: the event table is out of date; run go test ./agent/report -update", path)
	}
}
