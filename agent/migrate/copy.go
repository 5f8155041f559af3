package migrate

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/child"
	"github.com/mailcow-ha/mailcow-ha/agent/stack"
)

// Dir is the staging area on the Volume's mount point: Stage holds the copy of each of mailcow's directories
// (stack.DataDirs), Dump the database's, and the switch moves what it replaces to replaced-<time>.
const Dir = ".migrate"

// Stage is the copy's directory below Dir.
const Stage = "stage"

// Place is one directory of the old server that becomes a directory on the Volume.
type Place struct {
	From string // on the old server
	Dir  string // one of stack.DataDirs
}

// Places are where the old server keeps what the cluster keeps on its Volume: each named volume that
// stack.Placements puts there (<volumes>/<project>_<volume>/_data) and each bind of mailcow's tree that
// stack.BindPlacements does (the certificates).
func (s Source) Places(project string) []Place {
	var out []Place
	for v, p := range stack.Placements {
		if slices.Contains(stack.DataDirs, p.Dir) {
			out = append(out, Place{From: fmt.Sprintf("%s/%s_%s/_data", s.VolumesDir, project, v), Dir: p.Dir})
		}
	}
	for b, d := range stack.BindPlacements {
		out = append(out, Place{From: s.MailcowDir + "/" + strings.TrimPrefix(b, "./"), Dir: d})
	}
	slices.SortFunc(out, func(a, b Place) int { return strings.Compare(a.Dir+a.From, b.Dir+b.From) })
	return out
}

// Copied is what one pass of Copy did.
type Copied struct {
	Dirs    []string // the Volume's directories that had a source
	Missing []string // places the old server does not have (an older release, a feature never used)
	Bytes   int64    // what rsync received
	Took    time.Duration
}

var receivedRE = regexp.MustCompile(`(?m)^Total bytes received: ([\d,.]+)`)

// Copy brings the stage on the Volume's mount point to the old server's places: rsync over SSH, owners by number
// (mailcow's containers use the same ids everywhere), hard links, and what the old server no longer has deleted
// from the stage. Run again, it sends only what changed.
func Copy(ctx context.Context, s Source, project, mount string) (Copied, error) {
	t0 := time.Now()
	places := s.Places(project)
	var probe strings.Builder
	for _, p := range places {
		fmt.Fprintf(&probe, "test -d %s && echo %s; ", quote(p.From), quote(p.From))
	}
	out, err := s.Run(ctx, probe.String()+"true")
	if err != nil {
		return Copied{}, err
	}
	have := strings.Fields(out)
	var c Copied
	stage := filepath.Join(mount, Dir, Stage)
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return c, fmt.Errorf("migrate: %w", err)
	}
	if err := os.Chmod(filepath.Join(mount, Dir), 0o700); err != nil { // the stage and the dump: root's only
		return c, fmt.Errorf("migrate: %w", err)
	}
	for _, p := range places {
		if !slices.Contains(have, p.From) {
			c.Missing = append(c.Missing, p.From)
			continue
		}
		to := filepath.Join(stage, p.Dir)
		if err := os.MkdirAll(to, 0o755); err != nil {
			return c, fmt.Errorf("migrate: %w", err)
		}
		cmd := child.Command(ctx, "rsync", "-aH", "--numeric-ids", "--delete", "--stats", "-e", s.RsyncShell(),
			s.Destination()+":"+p.From+"/", to+"/")
		var o bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &o
		if err := cmd.Run(); err != nil {
			return c, fmt.Errorf("migrate: copying %s:%s: %w: %s", s.Host, p.From, err, lastLines(o.String(), 3))
		}
		if m := receivedRE.FindStringSubmatch(o.String()); m != nil {
			n, _ := strconv.ParseInt(strings.NewReplacer(",", "", ".", "").Replace(m[1]), 10, 64)
			c.Bytes += n
		}
		c.Dirs = append(c.Dirs, p.Dir)
	}
	c.Took = time.Since(t0)
	if !slices.Contains(c.Dirs, "vmail") {
		return c, fmt.Errorf("migrate: %s has no mail volume (%s/%s_vmail-vol-1): check --volumes-dir and COMPOSE_PROJECT_NAME", s.Host, s.VolumesDir, project)
	}
	return c, nil
}

// lastLines is the end of a tool's output, for an error.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}
