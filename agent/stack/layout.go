package stack

import (
	"path/filepath"
	"sort"
)

// Services are mailcow-dockerized's 18 compose services with the dependencies its docker-compose.yml declares
// (release 2026-07a; TestStubLayoutIsMailcows compares them with the real file). Discovery prefers the
// dependencies that compose recorded on the containers (label com.docker.compose.depends_on); this table is the
// fallback and the stub stack's source.
var Services = []Service{
	{Name: "unbound-mailcow"},
	{Name: "mysql-mailcow", DependsOn: []string{"unbound-mailcow", "netfilter-mailcow"}},
	{Name: "redis-mailcow", DependsOn: []string{"netfilter-mailcow"}},
	{Name: "clamd-mailcow", DependsOn: []string{"unbound-mailcow"}},
	{Name: "rspamd-mailcow", DependsOn: []string{"dovecot-mailcow", "clamd-mailcow"}},
	{Name: "php-fpm-mailcow", DependsOn: []string{"redis-mailcow"}},
	{Name: "sogo-mailcow"},
	{Name: "dovecot-mailcow", DependsOn: []string{"mysql-mailcow", "netfilter-mailcow", "redis-mailcow"}},
	{Name: "postfix-mailcow", DependsOn: []string{"mysql-mailcow", "unbound-mailcow", "postfix-tlspol-mailcow"}},
	{Name: "postfix-tlspol-mailcow", DependsOn: []string{"unbound-mailcow"}},
	{Name: "memcached-mailcow"},
	{Name: "nginx-mailcow", DependsOn: []string{"redis-mailcow", "php-fpm-mailcow", "sogo-mailcow", "rspamd-mailcow"}},
	{Name: "acme-mailcow", DependsOn: []string{"nginx-mailcow", "unbound-mailcow"}},
	{Name: "netfilter-mailcow"},
	{Name: "watchdog-mailcow", DependsOn: []string{"postfix-mailcow", "dovecot-mailcow", "mysql-mailcow", "acme-mailcow", "redis-mailcow"}},
	{Name: "dockerapi-mailcow"},
	{Name: "olefy-mailcow"},
	{Name: "ofelia-mailcow", DependsOn: []string{"sogo-mailcow", "dovecot-mailcow"}},
}

// Intake is the service that accepts mail (SMTP): a takeover starts it, with what it depends on, before the rest
// (Stack.First), so that senders are answered first; the rest follow at once.
var Intake = []string{"postfix-mailcow"}

// Service is one compose service.
type Service struct {
	Name      string
	DependsOn []string
}

// DataDirs are mailcow's stateful volumes, as directories on the shared Volume's mount point.
var DataDirs = []string{"vmail", "vmail-index", "crypt", "redis", "rspamd", "postfix", "postfix-tlspol", "sogo", "ssl"}

// Mount binds a container path of a service to a directory on the Volume (Dir is one of DataDirs) or, with
// Dir == SocketDir, to the host's MariaDB socket directory.
type Mount struct {
	Service  string
	Target   string // the container path exactly as mailcow's docker-compose.yml writes it: compose merges by it
	Dir      string
	ReadOnly bool
}

// SocketDir marks a Mount of the host's MariaDB socket directory.
const SocketDir = "@mysqld"

// Mounts are the stub stack's binds to the Volume: the mounts of mailcow's docker-compose.yml that Placements and
// BindPlacements move there (TestStubLayoutIsMailcows compares them with the real file).
var Mounts = []Mount{
	{"dovecot-mailcow", "/var/vmail", "vmail", false},
	{"dovecot-mailcow", "/var/vmail_index", "vmail-index", false},
	{"dovecot-mailcow", "/mail_crypt/", "crypt", false},
	{"dovecot-mailcow", "/var/lib/rspamd", "rspamd", false},
	{"dovecot-mailcow", "/etc/ssl/mail/", "ssl", true},
	{"dovecot-mailcow", "/var/run/mysqld/", SocketDir, false},
	{"postfix-mailcow", "/var/spool/postfix", "postfix", false},
	{"postfix-mailcow", "/var/lib/zeyple", "crypt", false},
	{"postfix-mailcow", "/var/lib/rspamd", "rspamd", false},
	{"postfix-mailcow", "/etc/ssl/mail/", "ssl", true},
	{"postfix-mailcow", "/var/run/mysqld/", SocketDir, false},
	{"postfix-tlspol-mailcow", "/var/lib/postfix-tlspol", "postfix-tlspol", false},
	{"rspamd-mailcow", "/var/lib/rspamd", "rspamd", false},
	{"redis-mailcow", "/data/", "redis", false},
	{"php-fpm-mailcow", "/var/lib/rspamd", "rspamd", false},
	{"php-fpm-mailcow", "/var/run/mysqld/", SocketDir, false},
	{"sogo-mailcow", "/sogo_backup", "sogo", false},
	{"sogo-mailcow", "/var/run/mysqld/", SocketDir, false},
	{"nginx-mailcow", "/etc/ssl/mail/", "ssl", true},
	{"acme-mailcow", "/var/lib/acme/", "ssl", false},
	{"acme-mailcow", "/var/run/mysqld/", SocketDir, false},
	{"watchdog-mailcow", "/var/lib/rspamd", "rspamd", false},
	{"watchdog-mailcow", "/var/spool/postfix", "postfix", false},
	{"watchdog-mailcow", "/etc/ssl/mail/", "ssl", true},
	{"watchdog-mailcow", "/var/run/mysqld/", SocketDir, false},
	{"mysql-mailcow", "/var/run/mysqld/", SocketDir, false},
}

// Source returns the host path of a mount.
func (m Mount) Source(dataMount, socketDir string) string {
	if m.Dir == SocketDir {
		return socketDir
	}
	return filepath.Join(dataMount, m.Dir)
}

// MountsOf returns a service's mounts in table order.
func MountsOf(service string) []Mount {
	var out []Mount
	for _, m := range Mounts {
		if m.Service == service {
			out = append(out, m)
		}
	}
	return out
}

// Port is a TCP port a critical service must answer on, with the mailcow.conf variable that moves it.
type Port struct {
	Var  string
	Port int
}

// ServicePorts are the ports that prove a service serves: 25, 465, 587, 143, 993, 110, 995, 4190 and 443.
var ServicePorts = map[string][]Port{
	"postfix-mailcow": {{"SMTP_PORT", 25}, {"SMTPS_PORT", 465}, {"SUBMISSION_PORT", 587}},
	"dovecot-mailcow": {{"IMAP_PORT", 143}, {"IMAPS_PORT", 993}, {"POP_PORT", 110}, {"POPS_PORT", 995}, {"SIEVE_PORT", 4190}},
	"nginx-mailcow":   {{"HTTPS_PORT", 443}},
}

// Levels orders services for start: every service comes in a later level than all it depends on. Unknown
// dependencies are ignored; a cycle puts the rest into one last level, in name order.
func Levels(deps map[string][]string) [][]string {
	placed := map[string]bool{}
	var levels [][]string
	for len(placed) < len(deps) {
		var level []string
		for name, ds := range deps {
			if placed[name] {
				continue
			}
			ready := true
			for _, d := range ds {
				if _, known := deps[d]; known && !placed[d] && d != name {
					ready = false
					break
				}
			}
			if ready {
				level = append(level, name)
			}
		}
		if len(level) == 0 {
			for name := range deps {
				if !placed[name] {
					level = append(level, name)
				}
			}
		}
		sort.Strings(level)
		for _, n := range level {
			placed[n] = true
		}
		levels = append(levels, level)
	}
	return levels
}
