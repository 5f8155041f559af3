package stack

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailcow-ha/mailcow-ha/agent/mailcowconf"
)

// mailcow.conf is written 0600 with .env linked to it; a mailcow.conf and an .env that the agent did not write
// are kept beside it, not lost; an unchanged file is not written again; the hash of what the containers were
// created from follows mailcow.conf.
func TestWriteConf(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	os.WriteFile(filepath.Join(dir, mailcowconf.File), []byte("MAILCOW_HOSTNAME=old.example.org\nDBPASS=hand-made\n"), 0o644)
	os.WriteFile(filepath.Join(dir, mailcowconf.Env), []byte("COMPOSE_PROJECT_NAME=x\n"), 0o644)
	conf := []byte("# Written by mailcow-ha\nMAILCOW_HOSTNAME=mail.example.org\n")
	if err := WriteConf(dir, conf, log); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, mailcowconf.File)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mailcow.conf: %v %v; want mode 0600", fi, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, mailcowconf.Env)); string(b) != string(conf) {
		t.Errorf(".env reads %q, want mailcow.conf's content", b)
	}
	if l, err := os.Readlink(filepath.Join(dir, mailcowconf.Env)); err != nil || l != mailcowconf.File {
		t.Errorf(".env: %q %v; want a link to mailcow.conf", l, err)
	}
	kept, _ := filepath.Glob(filepath.Join(dir, "*.before-mailcow-ha-*"))
	var keptConf string
	for _, k := range kept {
		if strings.HasPrefix(filepath.Base(k), mailcowconf.File) {
			b, _ := os.ReadFile(k)
			keptConf = string(b)
		}
	}
	if len(kept) != 2 || !strings.Contains(keptConf, "DBPASS=hand-made") {
		t.Fatalf("kept %v (%q); want the hand-made mailcow.conf and .env", kept, keptConf)
	}
	// Again, unchanged: nothing is written or kept.
	before, _ := os.Stat(path)
	if err := WriteConf(dir, conf, log); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(path)
	if !after.ModTime().Equal(before.ModTime()) {
		t.Error("an unchanged mailcow.conf was written again")
	}
	// Changed: replaced in place, the agent's own older file is not kept.
	if err := WriteConf(dir, append(conf, "TZ=Etc/UTC\n"...), log); err != nil {
		t.Fatal(err)
	}
	if again, _ := filepath.Glob(filepath.Join(dir, "*.before-mailcow-ha-*")); len(again) != 2 {
		t.Errorf("kept %v after the agent's own change", again)
	}
	s := &Stack{Override: []byte("o")}
	h1 := s.configHash()
	s.Conf = conf
	h2 := s.configHash()
	s.Conf = append(conf, 'x')
	if h1 == h2 || h2 == s.configHash() {
		t.Error("the hash does not follow mailcow.conf")
	}
	// A new release's compose file (mailcow update) makes Start create the containers again.
	h3 := s.configHash()
	s.composeFile = []byte("services: {}\n")
	if s.configHash() == h3 {
		t.Error("the hash does not follow mailcow's compose file")
	}
}
