package backup

// The Volume's backup: restic reads the mounted Volume's directories on the MASTER while mail flows. A file-by-file
// copy of a live tree is only as consistent as the files it reads, so the copy is checked against what was there:
//
//   - A message in a Maildir is one file, written to tmp/ and renamed into new/ before its 250 (mailcow's dovecot
//     and our stub both); later it is only renamed (new/ to cur/, flags after the ":") or deleted. Its unique name,
//     the part before the ":", stays. A message that was in the mailbox when a pass began and is still there when
//     it ends must be in that pass's snapshot under its unique name; a rename while restic walked the directory can
//     make it miss one, and then the pass is repeated (restic reads only what changed, so a repeat is cheap).
//   - postfix's queue holds what was acknowledged and not yet delivered. restic walks the directories in name
//     order, so the queue ("postfix") is read before the mailboxes ("vmail"): a message that leaves the queue
//     before restic reads it is in a mailbox before restic reads those.
//   - Redis writes its dump by rename, so the copy is its last save. The indexes (vmail-index) are caches that
//     dovecot rebuilds. The rest (crypt, rspamd, sogo, ssl, postfix-tlspol) changes rarely and by rename.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Snapshot tags of the Volume's and the configuration's copies.
const (
	TagVolume = "volume"
	TagConfig = "config"
)

// Volume is the mounted Volume a backup copies.
type Volume struct {
	Mount     string   // its mount point
	Dirs      []string // the directories to copy, relative to Mount; those that do not exist are skipped
	MaxPasses int      // how often the copy is repeated until it holds every message; default 3
}

// VolumeSummary is what a Volume's backup did.
type VolumeSummary struct {
	Summary      // the last pass's, but DataAdded counts every pass
	Passes   int // restic runs until the snapshot held every message
	Messages int // messages in the mailboxes when the last pass began
	Vanished int // files that went while restic read them (restic's warnings), in the last pass
}

// BackupVolume copies v's directories into a new snapshot tagged TagVolume and tags, of host, repeated until the
// snapshot holds every message that was in a mailbox through the whole pass. The snapshots of earlier passes are
// forgotten: one snapshot is left.
func BackupVolume(ctx context.Context, repo Repo, v Volume, host string, tags ...string) (VolumeSummary, error) {
	var dirs []string
	for _, d := range v.Dirs {
		if filepath.IsAbs(d) || strings.HasPrefix(filepath.Clean(d), "..") {
			return VolumeSummary{}, fmt.Errorf("volume backup: %q is not a directory below the mount", d)
		}
		if fi, err := os.Stat(filepath.Join(v.Mount, d)); err == nil && fi.IsDir() {
			dirs = append(dirs, d)
		}
	}
	if len(dirs) == 0 {
		return VolumeSummary{}, fmt.Errorf("volume backup: none of %v below %s", v.Dirs, v.Mount)
	}
	sort.Strings(dirs) // the order restic walks them in; see the file's comment
	passes := v.MaxPasses
	if passes <= 0 {
		passes = 3
	}
	tags = append([]string{TagVolume}, tags...)
	var missing []string
	var added int64 // what every pass added: the forgotten passes' data stays in the repository until a prune
	for pass := 1; pass <= passes; pass++ {
		before, err := Messages(v.Mount)
		if err != nil {
			return VolumeSummary{}, err
		}
		sum, vanished, err := repo.backupDir(ctx, v.Mount, dirs, host, tags)
		if err != nil {
			return VolumeSummary{}, err
		}
		added += sum.DataAdded
		after, err := Messages(v.Mount)
		if err != nil {
			return VolumeSummary{}, err
		}
		held, err := repo.messagesIn(ctx, sum.SnapshotID)
		if err != nil {
			return VolumeSummary{}, err
		}
		missing = missing[:0]
		for k := range before {
			if after[k] && !held[k] {
				missing = append(missing, k)
			}
		}
		if len(missing) == 0 {
			sum.DataAdded = added
			return VolumeSummary{Summary: sum, Passes: pass, Messages: len(before), Vanished: vanished}, nil
		}
		if err := repo.Forget(ctx, sum.SnapshotID); err != nil {
			return VolumeSummary{}, err
		}
	}
	sort.Strings(missing)
	return VolumeSummary{}, fmt.Errorf("volume backup: after %d passes the copy still lacks %d messages (first %s): the mailboxes change faster than restic reads them", passes, len(missing), missing[0])
}

// Messages lists the messages in the Maildirs below mount/vmail by their key: the mailbox (domain/local) and the
// message's unique name, which renames keep.
func Messages(mount string) (map[string]bool, error) {
	keys := map[string]bool{}
	root := filepath.Join(mount, "vmail")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // went while walked (a rename, a deleted folder), or no vmail yet
			}
			return err
		}
		if d.Type().IsRegular() {
			if k, ok := messageKey(strings.TrimPrefix(p, mount)); ok {
				keys[k] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("volume backup: the mailboxes: %w", err)
	}
	return keys, nil
}

// messageKey is the key of a message file at p (a path below the Volume, "/vmail/<domain>/<local>/.../new|cur/F").
func messageKey(p string) (string, bool) {
	parts := strings.Split(strings.Trim(filepath.ToSlash(p), "/"), "/")
	if len(parts) < 5 || parts[0] != "vmail" {
		return "", false
	}
	if sub := parts[len(parts)-2]; sub != "new" && sub != "cur" {
		return "", false
	}
	name, _, _ := strings.Cut(parts[len(parts)-1], ":")
	return parts[1] + "/" + parts[2] + "/" + name, true
}

// backupDir stores dirs, relative to dir, in a new snapshot: the snapshot's tree starts with them, so a restore
// into an empty mount point puts them back where they were. Files that went while restic read them are counted,
// not failed (restic's exit status 3; the caller checks what matters).
func (r Repo) backupDir(ctx context.Context, dir string, dirs []string, host string, tags []string) (Summary, int, error) {
	args := []string{"backup", "--json", "--host", host}
	for _, t := range tags {
		args = append(args, "--tag", t)
	}
	cmd := r.command(ctx, append(append(args, "--"), dirs...)...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 3) {
		return Summary{}, 0, fmt.Errorf("restic backup: %w: %s", err, lastLines(errb.String(), 3))
	}
	sum, perr := parseSummary(out.Bytes())
	if perr != nil {
		return sum, 0, perr
	}
	vanished := 0
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Type string `json:"message_type"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Type == "error" {
			vanished++
		}
	}
	return sum, vanished, nil
}

// messagesIn lists the message keys a snapshot of the Volume holds.
func (r Repo) messagesIn(ctx context.Context, id string) (map[string]bool, error) {
	keys := map[string]bool{}
	err := r.ls(ctx, id, []string{"/vmail"}, func(path, typ string) {
		if typ == "file" {
			if k, ok := messageKey(path); ok {
				keys[k] = true
			}
		}
	})
	return keys, err
}

// ls calls f with the path and type of every node of snapshot id below the given paths.
func (r Repo) ls(ctx context.Context, id string, below []string, f func(path, typ string)) error {
	cmd := r.command(ctx, append([]string{"ls", "--json", "--recursive", id}, below...)...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("restic ls: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("restic ls: %w", err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var n struct {
			Path   string `json:"path"`
			Type   string `json:"type"`
			Struct string `json:"struct_type"`
		}
		if json.Unmarshal(sc.Bytes(), &n) == nil && n.Struct == "node" {
			f(n.Path, n.Type)
		}
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("restic ls %s: %w: %s", id, err, lastLines(errb.String(), 3))
	}
	return nil
}

// RestoreVolume puts snapshot id of the Volume into target, which must be empty (a new Volume's lost+found
// aside), and verifies what it wrote.
func RestoreVolume(ctx context.Context, repo Repo, id, target string) error {
	if err := emptyDir(target, "lost+found"); err != nil {
		return err
	}
	if _, err := repo.run(ctx, nil, "restore", id, "--target", target, "--verify"); err != nil {
		return err
	}
	return nil
}

// emptyDir refuses a directory that holds anything but the names allowed: a restore never writes over data.
func emptyDir(dir string, allowed ...string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("restore into %s: %w", dir, err)
	}
	for _, e := range ents {
		ok := false
		for _, a := range allowed {
			ok = ok || e.Name() == a
		}
		if !ok {
			return fmt.Errorf("restore into %s: it is not empty (%s): a restore never writes over data", dir, e.Name())
		}
	}
	return nil
}

// MailboxRestore is what RestoreMailbox did.
type MailboxRestore struct {
	Restored int // messages put back
	Present  int // messages of the snapshot the mailbox still held
}

// RestoreMailbox puts back into a live mailbox, address local@domain on the Volume mounted at mount, every message
// of snapshot id that it no longer holds, each in its folder and with its flags. What the mailbox holds stays as it
// is, and mail goes on arriving: each message is unpacked beside the mailbox (the same file system) and renamed into
// place whole, as a delivery is. dovecot finds the messages by the directories' change.
func RestoreMailbox(ctx context.Context, repo Repo, id, mount, address string) (MailboxRestore, error) {
	local, domain, ok := strings.Cut(strings.ToLower(strings.TrimSpace(address)), "@")
	for _, part := range []string{local, domain} {
		if !ok || part == "" || part == "." || part == ".." || strings.ContainsAny(part, "/\\\x00") {
			return MailboxRestore{}, fmt.Errorf("restore mailbox: %q is not an address local@domain", address)
		}
	}
	rel := filepath.Join("vmail", domain, local)
	live := map[string]bool{}
	if err := filepath.WalkDir(filepath.Join(mount, rel), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if k, ok := messageKey(strings.TrimPrefix(p, mount)); ok && d.Type().IsRegular() {
			live[k] = true
		}
		return nil
	}); err != nil {
		return MailboxRestore{}, fmt.Errorf("restore mailbox: %w", err)
	}
	tmp, err := os.MkdirTemp(mount, ".restore-")
	if err != nil {
		return MailboxRestore{}, fmt.Errorf("restore mailbox: %w", err)
	}
	defer os.RemoveAll(tmp)
	if _, err := repo.run(ctx, nil, "restore", id, "--target", tmp, "--include", "/"+filepath.ToSlash(rel)); err != nil {
		return MailboxRestore{}, err
	}
	if _, err := os.Stat(filepath.Join(tmp, rel)); err != nil {
		return MailboxRestore{}, fmt.Errorf("restore mailbox: snapshot %s holds no mailbox %s", id, address)
	}
	var r MailboxRestore
	err = filepath.WalkDir(filepath.Join(tmp, rel), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		relp := strings.TrimPrefix(p, tmp)
		if d.IsDir() {
			return sameDir(p, filepath.Join(mount, relp)) // a deleted folder comes back with its owner and mode
		}
		if !d.Type().IsRegular() {
			return nil
		}
		k, ok := messageKey(relp)
		if !ok {
			return nil // dovecot's own files (uidlist, indexes) stay as the live mailbox has them
		}
		if live[k] {
			r.Present++
			return nil
		}
		if err := os.Rename(p, filepath.Join(mount, relp)); err != nil {
			return err
		}
		r.Restored++
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("restore mailbox %s: %w", address, err)
	}
	return r, nil
}

// sameDir makes dst, when it is missing, a directory with src's mode and owner.
func sameDir(src, dst string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if _, err := os.Stat(dst); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Mkdir(dst, fi.Mode().Perm()); err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return os.Lchown(dst, int(st.Uid), int(st.Gid))
	}
	return nil
}

// BackupFiles stores the files and directories at paths (absolute; those missing are skipped) in a new snapshot with
// tags, of host.
func BackupFiles(ctx context.Context, repo Repo, paths []string, host string, tags ...string) (Summary, error) {
	var have []string
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return Summary{}, fmt.Errorf("backup: %q is not an absolute path", p)
		}
		if _, err := os.Lstat(p); err == nil {
			have = append(have, p)
		}
	}
	if len(have) == 0 {
		return Summary{}, fmt.Errorf("backup: none of %v exists", paths)
	}
	sum, _, err := repo.backupDir(ctx, "/", have, host, tags)
	return sum, err
}
