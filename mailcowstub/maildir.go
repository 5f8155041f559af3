package mailcowstub

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Maildir is one mailbox in mailcow's layout: <vmail>/<domain>/<local>/Maildir.
type Maildir string

// MailboxDir returns the Maildir of an address, refusing names that could leave the vmail directory.
func MailboxDir(vmail, addr string) (Maildir, error) {
	addr = strings.ToLower(strings.TrimSpace(addr))
	local, domain, ok := strings.Cut(addr, "@")
	if !ok || local == "" || domain == "" {
		return "", fmt.Errorf("address %q: want local@domain", addr)
	}
	for _, part := range []string{local, domain} {
		if part == "." || part == ".." || strings.ContainsAny(part, "/\\\x00") {
			return "", fmt.Errorf("address %q: not a safe mailbox name", addr)
		}
	}
	return Maildir(filepath.Join(vmail, domain, local, "Maildir")), nil
}

// Deliver stores msg durably: written to tmp/, fsynced, renamed into new/, and the directory fsynced. Only then
// may the SMTP server answer 250.
func (m Maildir) Deliver(msg []byte, host string) (string, error) {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(string(m), sub), 0o700); err != nil {
			return "", fmt.Errorf("maildir: %w", err)
		}
	}
	var r [6]byte
	_, _ = rand.Read(r[:])
	name := fmt.Sprintf("%020d.%s.%s", time.Now().UnixNano(), hex.EncodeToString(r[:]), host)
	tmp := filepath.Join(string(m), "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("maildir: %w", err)
	}
	_, err = f.Write(msg)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(string(m), "new", name))
	}
	if err == nil {
		err = syncDir(filepath.Join(string(m), "new"))
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("maildir: %w", err)
	}
	return name, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Messages lists the mailbox's messages (new/ and cur/) in delivery order; the position is the IMAP sequence
// number and the UID.
func (m Maildir) Messages() ([]string, error) {
	var out []string
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(string(m), sub))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("maildir: %w", err)
		}
		for _, e := range ents {
			if e.Type().IsRegular() {
				out = append(out, filepath.Join(string(m), sub, e.Name()))
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return filepath.Base(out[i]) < filepath.Base(out[j]) })
	return out, nil
}
