// Package backup keeps the cluster's backups in a restic repository (encrypted, deduplicated, incremental; a local
// path, SFTP such as a Hetzner Storage Box, or S3-compatible storage) and takes them out again. restic is run as a
// process (it has no library API); what goes into it comes from kept tools too (mariabackup for the database).
package backup

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/child"
)

// Repo is a restic repository. Its password stays in a file (RESTIC_PASSWORD_FILE): never in an argument or the
// log.
type Repo struct {
	Location     string   // RESTIC_REPOSITORY: /path, sftp:user@host:/path, s3:https://host/bucket
	PasswordFile string   // mode 0600
	CacheDir     string   // restic's cache; "" for its default
	Env          []string // more of restic's environment (AWS_ACCESS_KEY_ID_FILE is not one: the caller reads it)
	Bin          string   // default restic
}

// Snapshot is one backup in the repository.
type Snapshot struct {
	ID       string    `json:"id"`
	ShortID  string    `json:"short_id"`
	Time     time.Time `json:"time"`
	Hostname string    `json:"hostname"`
	Tags     []string  `json:"tags"`
	Paths    []string  `json:"paths"`
}

// Summary is what a backup added: restic's summary line.
type Summary struct {
	SnapshotID      string  `json:"snapshot_id"` // restic 0.14 gives the short id
	FilesNew        int     `json:"files_new"`
	FilesChanged    int     `json:"files_changed"`
	FilesUnmodified int     `json:"files_unmodified"`
	DataAdded       int64   `json:"data_added"`
	BytesProcessed  int64   `json:"total_bytes_processed"`
	Duration        float64 `json:"total_duration"`
}

func (r Repo) command(ctx context.Context, args ...string) *exec.Cmd {
	bin := r.Bin
	if bin == "" {
		bin = "restic"
	}
	cmd := child.Command(ctx, bin, args...)
	cmd.Env = append(cmd.Env, "RESTIC_REPOSITORY="+r.Location, "RESTIC_PASSWORD_FILE="+r.PasswordFile)
	if r.CacheDir != "" {
		cmd.Env = append(cmd.Env, "RESTIC_CACHE_DIR="+r.CacheDir)
	}
	cmd.Env = append(cmd.Env, r.Env...)
	return cmd
}

// run runs restic and returns its standard output; a failure carries the end of its standard error.
func (r Repo) run(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	cmd := r.command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("restic %s: %w: %s", args[0], err, lastLines(errb.String(), 3))
	}
	return out.Bytes(), nil
}

// Init makes the repository unless it exists.
func (r Repo) Init(ctx context.Context) error {
	_, err := r.run(ctx, nil, "init")
	if err != nil && strings.Contains(err.Error(), "already initialized") || err != nil && strings.Contains(err.Error(), "config file already exists") {
		return nil
	}
	return err
}

// Snapshots lists the backups that carry every tag given, oldest first.
func (r Repo) Snapshots(ctx context.Context, tags ...string) ([]Snapshot, error) {
	args := []string{"snapshots", "--json"}
	if len(tags) > 0 {
		args = append(args, "--tag", strings.Join(tags, ","))
	}
	out, err := r.run(ctx, nil, args...)
	if err != nil {
		return nil, err
	}
	var s []Snapshot
	if err := json.Unmarshal(out, &s); err != nil {
		return nil, fmt.Errorf("restic snapshots: %w", err)
	}
	return s, nil
}

// Latest returns the newest snapshot that carries every tag given; an error when none does.
func (r Repo) Latest(ctx context.Context, tags ...string) (Snapshot, error) {
	return r.LatestBefore(ctx, time.Time{}, tags...)
}

// LatestBefore returns the newest snapshot taken before t (any time when t is zero) that carries every tag given;
// an error when none does.
func (r Repo) LatestBefore(ctx context.Context, t time.Time, tags ...string) (Snapshot, error) {
	snaps, err := r.Snapshots(ctx, tags...)
	if err != nil {
		return Snapshot{}, err
	}
	for i := len(snaps) - 1; i >= 0; i-- {
		if t.IsZero() || snaps[i].Time.Before(t) {
			return snaps[i], nil
		}
	}
	if !t.IsZero() {
		return Snapshot{}, fmt.Errorf("the repository holds no snapshot tagged %s taken before %s", strings.Join(tags, ","), t.UTC().Format(time.RFC3339))
	}
	return Snapshot{}, fmt.Errorf("the repository holds no snapshot tagged %s", strings.Join(tags, ","))
}

// backupStdin stores what in reads as one file, name, in a new snapshot with tags and host.
func (r Repo) backupStdin(ctx context.Context, in io.Reader, name, host string, tags []string) (Summary, error) {
	args := []string{"backup", "--json", "--stdin", "--stdin-filename", name, "--host", host}
	for _, t := range tags {
		args = append(args, "--tag", t)
	}
	out, err := r.run(ctx, in, args...)
	sum, perr := parseSummary(out)
	if err != nil {
		return sum, err // a snapshot may have been made of what was read: the caller forgets it
	}
	return sum, perr
}

// parseSummary finds restic backup's summary among its JSON lines.
func parseSummary(out []byte) (Summary, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Type string `json:"message_type"`
			Summary
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Type == "summary" && line.SnapshotID != "" {
			return line.Summary, nil
		}
	}
	return Summary{}, errors.New("restic backup: no summary in its output")
}

// Forget removes a snapshot (its data goes at the next prune).
func (r Repo) Forget(ctx context.Context, id string) error {
	_, err := r.run(ctx, nil, "forget", id)
	return err
}

// Dump writes the file path of snapshot id to w.
func (r Repo) Dump(ctx context.Context, id, path string, w io.Writer) error {
	cmd := r.command(ctx, "dump", id, path)
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = w, &errb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("restic dump %s %s: %w: %s", id, path, err, lastLines(errb.String(), 3))
	}
	return nil
}

// Check verifies the repository's structure and reads back subset of its data ("10%", "1/5"; "" reads none).
func (r Repo) Check(ctx context.Context, subset string) error {
	args := []string{"check"}
	if subset != "" {
		args = append(args, "--read-data-subset", subset)
	}
	_, err := r.run(ctx, nil, args...)
	return err
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
