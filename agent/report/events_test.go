package report

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the event table in docs/journal.md")

// The catalog is consistent: unique names and MESSAGE_IDs, known severities.
func TestCatalog(t *testing.T) {
	names, ids := map[string]bool{}, map[string]bool{}
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

// Every event the agent reports is in the catalog with the severity it is reported at, and every catalog entry
// is reported somewhere.
func TestCatalogCoversTheCode(t *testing.T) {
	patterns := []*regexp.Regexp{
		regexp.MustCompile(`Sev(Info|Warning|Critical), "([a-z_]+)"`),                               // brain: report(sev, event, …), drift{sev, event, …}
		regexp.MustCompile(`alert\("([a-z_]+)", report\.Severity(Info|Warning|Critical)`),           // daemon: a.alert(event, severity, …)
		regexp.MustCompile(`Event: "([a-z_]+)", Severity: report\.Severity(Info|Warning|Critical)`), // daemon: alerts.Send(Event{…})
		regexp.MustCompile(`(?:event :?= |: )"((?:failover_failed|api_unavailable|maintenance_on|maintenance_off))"`),
		regexp.MustCompile(`\.Alert\("([a-z_]+)"`), // galera.Manager's and unitStack's alert callbacks
	}
	files, _ := filepath.Glob("../failover/*.go")
	more, _ := filepath.Glob("../daemon/*.go")
	gal, _ := filepath.Glob("../galera/*.go")
	files = append(append(files, more...), gal...)
	cat := map[string]string{}
	for _, e := range Catalog() {
		cat[e.Name] = e.Severity
	}
	seen := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, re := range patterns {
			for _, m := range re.FindAllStringSubmatch(string(b), -1) {
				var name, sev string
				switch i {
				case 0:
					sev, name = strings.ToLower(m[1]), m[2]
				case 1, 2:
					name, sev = m[1], strings.ToLower(m[2])
				default:
					name = m[1]
				}
				seen[name] = true
				want, ok := cat[name]
				if !ok {
					t.Errorf("%s reports %q, which is not in report.Catalog (nor docs/journal.md)", f, name)
				} else if sev != "" && sev != want {
					t.Errorf("%s reports %q as %s, the catalog says %s", f, name, sev, want)
				}
			}
		}
	}
	for _, e := range Catalog() {
		if !seen[e.Name] {
			t.Errorf("catalog event %q is reported nowhere", e.Name)
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
