package migrate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/child"
	"github.com/mailcow-ha/mailcow-ha/agent/stack"
)

// Ready is the stage's mark that its copy is final (the old server's mail stopped, everything copied after that,
// the database dumped): the switch takes nothing else.
const Ready = "ready.json"

// Staged says where a final stage came from.
type Staged struct {
	Host string    `json:"host"`
	Time time.Time `json:"time"`
}

// MarkReady marks the stage on mount final.
func MarkReady(mount string, s Staged) error {
	b, _ := json.Marshal(s)
	if err := os.WriteFile(filepath.Join(mount, Dir, Ready), b, 0o600); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// Switched is what a switch did.
type Switched struct {
	From     Staged
	Dirs     []string // the Volume's directories now from the old server
	Replaced string   // where the Volume's directories before the switch are kept
	Import   time.Duration
}

// Switch makes the final stage on mount the cluster's, with mailcow stopped: the dump imported into database
// through the local Galera member (root by its socket, as the agent), then each staged directory renamed into
// place and what it replaces moved aside to Dir/replaced-<time> (nothing is deleted: an operator removes it once
// the cluster serves). A failed import leaves the Volume as it was.
func Switch(ctx context.Context, mount, socket, database string) (Switched, error) {
	root := filepath.Join(mount, Dir)
	b, err := os.ReadFile(filepath.Join(root, Ready))
	if errors.Is(err, fs.ErrNotExist) {
		return Switched{}, errors.New("migrate: no final copy is staged on the Volume: run mailcow-ha migrate --final")
	}
	if err != nil {
		return Switched{}, fmt.Errorf("migrate: %w", err)
	}
	var sw Switched
	if err := json.Unmarshal(b, &sw.From); err != nil {
		return Switched{}, fmt.Errorf("migrate: %s: %w", Ready, err)
	}
	dump := filepath.Join(root, Dump)
	t0 := time.Now()
	if err := importDump(ctx, dump, socket, database); err != nil {
		return Switched{}, err
	}
	sw.Import = time.Since(t0)
	sw.Replaced = filepath.Join(root, "replaced-"+time.Now().UTC().Format("20060102T150405Z"))
	if err := os.MkdirAll(sw.Replaced, 0o700); err != nil {
		return sw, fmt.Errorf("migrate: %w", err)
	}
	stage := filepath.Join(root, Stage)
	for _, d := range stack.DataDirs {
		from := filepath.Join(stage, d)
		if _, err := os.Stat(from); err != nil {
			continue // the old server had none: the cluster's stays
		}
		live := filepath.Join(mount, d)
		if _, err := os.Lstat(live); err == nil {
			if err := os.Rename(live, filepath.Join(sw.Replaced, d)); err != nil {
				return sw, fmt.Errorf("migrate: moving the Volume's %s aside: %w", d, err)
			}
		}
		if err := os.Rename(from, live); err != nil {
			return sw, fmt.Errorf("migrate: putting the old server's %s in place: %w", d, err)
		}
		sw.Dirs = append(sw.Dirs, d)
	}
	slices.Sort(sw.Dirs)
	if err := errors.Join(os.Remove(dump), os.Remove(filepath.Join(root, Ready))); err != nil {
		return sw, fmt.Errorf("migrate: %w", err)
	}
	return sw, nil
}

// importDump loads the dump into database (made when missing) with the mariadb client.
func importDump(ctx context.Context, dump, socket, database string) error {
	f, err := os.Open(dump)
	if err != nil {
		return fmt.Errorf("migrate: the database's dump: %w", err)
	}
	defer f.Close()
	base := []string{"--no-defaults", "--socket=" + socket, "--user=root"}
	create := child.Command(ctx, "mariadb", append(base, "--execute=CREATE DATABASE IF NOT EXISTS `"+database+"`")...)
	if out, err := create.CombinedOutput(); err != nil {
		return fmt.Errorf("migrate: creating %s: %w: %s", database, err, lastLines(string(out), 3))
	}
	load := child.Command(ctx, "mariadb", append(base, "--database="+database)...)
	var out bytes.Buffer
	load.Stdin, load.Stdout, load.Stderr = f, &out, &out
	if err := load.Run(); err != nil {
		return fmt.Errorf("migrate: importing the old server's database into %s: %w: %s", database, err, lastLines(out.String(), 3))
	}
	return nil
}
