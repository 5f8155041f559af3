package child

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnviron(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("WATCHDOG_USEC", "30000000")
	t.Setenv("WATCHDOG_PID", "1")
	t.Setenv("MAILCOW_HA_KEEP", "yes")
	out, err := Command(t.Context(), "env").Output()
	if err != nil {
		t.Fatal(err)
	}
	env := string(out)
	for _, k := range systemdOnly {
		if strings.Contains(env, k+"=") {
			t.Errorf("a child inherited %s:\n%s", k, env)
		}
	}
	if !strings.Contains(env, "MAILCOW_HA_KEEP=yes") {
		t.Errorf("a child lost the rest of the environment:\n%s", env)
	}
	// The supervised children too.
	var c Child
	var b buf
	if err := c.Start([]string{"env"}, &b); err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	if strings.Contains(b.b.String(), "NOTIFY_SOCKET=") || !strings.Contains(b.b.String(), "MAILCOW_HA_KEEP=yes") {
		t.Errorf("a supervised child's environment:\n%s", b.b.String())
	}
}

// Every command the agent runs goes through Command or Child: no exec.Command or exec.CommandContext elsewhere
// under agent/ (tests aside), since that would hand systemd's notify socket to the child.
func TestNoOtherExec(t *testing.T) {
	fset := token.NewFileSet()
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") ||
			filepath.Dir(path) == filepath.Join("..", "child") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && x.Name == "exec" && (sel.Sel.Name == "Command" || sel.Sel.Name == "CommandContext") {
				t.Errorf("%s: exec.%s: use child.Command, which leaves systemd's variables out", fset.Position(sel.Pos()), sel.Sel.Name)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
