// Package mailcowstub plays mailcow's services for the tests and the lab, where mailcow's real images cannot be
// pulled: postfix (SMTP that stores each message durably in a Maildir before it answers 250), dovecot (IMAP that
// real clients such as `curl imap://` can list and fetch from, plus POP3 and ManageSieve greeters), nginx (HTTP and
// HTTPS with a health page) and a sleeper for every other service. One static binary is every service; the first
// argument names the role. It imports only the standard library, so that it builds into a small FROM-scratch image.
package mailcowstub

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"sync"
	"time"

	"github.com/mailcow-ha/mailcow-ha/stdio"
)

// Roles are the services the stub can play.
const (
	RolePostfix = "postfix"
	RoleDovecot = "dovecot"
	RoleNginx   = "nginx"
	RoleSleep   = "sleep"
)

// Ports lists the ports each role listens on; implicit-TLS ports are in TLSPorts.
var Ports = map[string][]int{
	RolePostfix: {25, 465, 587},
	RoleDovecot: {143, 993, 110, 995, 4190},
	RoleNginx:   {80, 443},
}

// TLSPorts are the ports that speak TLS from the first byte.
var TLSPorts = map[int]bool{465: true, 993: true, 995: true, 443: true}

// Options configure one stub service.
type Options struct {
	Role     string
	Bind     string // address to listen on; "" is every address
	PortBase int    // added to every port, so that tests can run without privileged ports
	VmailDir string // where postfix stores and dovecot reads mail
	Hostname string
	Logger   *slog.Logger
}

// Main runs `mailcow-stub ROLE [flags]` or `mailcow-stub health ROLE [flags]` (the container's health check).
func Main(ctx context.Context, args []string, io stdio.Stdio) int {
	if len(args) == 0 {
		fmt.Fprintln(io.Stderr, "usage: mailcow-stub postfix|dovecot|nginx|sleep [flags] | health ROLE [flags]")
		return 2
	}
	health := false
	if args[0] == "health" {
		health = true
		args = args[1:]
		if len(args) == 0 {
			fmt.Fprintln(io.Stderr, "usage: mailcow-stub health ROLE [flags]")
			return 2
		}
	}
	o := Options{Role: args[0]}
	fs := flag.NewFlagSet("mailcow-stub "+o.Role, flag.ContinueOnError)
	fs.SetOutput(io.Stderr)
	fs.StringVar(&o.Bind, "bind", "", "address to listen on (default: every address)")
	fs.IntVar(&o.PortBase, "port-base", 0, "added to every port")
	fs.StringVar(&o.VmailDir, "vmail", "/var/vmail", "mail directory (postfix writes, dovecot reads)")
	fs.StringVar(&o.Hostname, "hostname", "", "name in greetings (default: the host name)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if o.Hostname == "" {
		o.Hostname, _ = os.Hostname()
	}
	o.Logger = slog.New(slog.NewTextHandler(io.Stderr, nil)).With("role", o.Role)
	if health {
		if err := Health(ctx, o); err != nil {
			fmt.Fprintln(io.Stderr, err)
			return 1
		}
		return 0
	}
	if err := Run(ctx, o); err != nil {
		fmt.Fprintln(io.Stderr, err)
		return 1
	}
	return 0
}

// Health dials every port of the role on loopback.
func Health(ctx context.Context, o Options) error {
	for _, p := range Ports[o.Role] {
		addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(p+o.PortBase))
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("%s: %w", o.Role, err)
		}
		c.Close()
	}
	return nil
}

// Run serves the role until ctx ends.
func Run(ctx context.Context, o Options) error {
	var serve func(ctx context.Context, c net.Conn, port int)
	switch o.Role {
	case RoleSleep:
		<-ctx.Done()
		return nil
	case RolePostfix:
		serve = (&smtpServer{o: o}).serve
	case RoleDovecot:
		serve = (&imapServer{o: o}).serveAny
	case RoleNginx:
		serve = (&httpServer{o: o}).serve
	default:
		return fmt.Errorf("unknown role %q (want postfix, dovecot, nginx or sleep)", o.Role)
	}
	var tlsConf *tls.Config
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for _, p := range Ports[o.Role] {
		var lc net.ListenConfig
		l, err := lc.Listen(ctx, "tcp", net.JoinHostPort(o.Bind, fmt.Sprint(p+o.PortBase)))
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		if TLSPorts[p] {
			if tlsConf == nil {
				if tlsConf, err = selfSigned(o.Hostname); err != nil {
					return err
				}
			}
			l = tls.NewListener(l, tlsConf)
		}
		lns = append(lns, l)
	}
	o.Logger.Info("serving", "ports", Ports[o.Role], "port_base", o.PortBase, "vmail", o.VmailDir)
	var wg sync.WaitGroup
	for i, l := range lns {
		port := Ports[o.Role][i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer c.Close()
					serve(ctx, c, port)
				}()
			}
		}()
	}
	<-ctx.Done()
	for _, l := range lns {
		l.Close()
	}
	o.Logger.Info("stopping")
	return nil
}

// selfSigned makes a throw-away certificate for the implicit-TLS ports.
func selfSigned(host string) (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tls key: %w", err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, nil
}

// touch refreshes a connection's deadline before every read, so that an idle client cannot hold it forever.
func touch(c net.Conn) { _ = c.SetDeadline(time.Now().Add(5 * time.Minute)) }

// FreePortBase finds a port base under which every stub port is free on host (tests on a shared machine).
func FreePortBase(host string) (int, error) {
	for base := 20000 + os.Getpid()%40*500; base < 60000; base += 1000 {
		if portsFree(host, base) {
			return base, nil
		}
	}
	return 0, errors.New("no free port base between 20000 and 60000")
}

func portsFree(host string, base int) bool {
	for _, ports := range Ports {
		for _, p := range ports {
			l, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(base+p)))
			if err != nil {
				return false
			}
			l.Close()
		}
	}
	return true
}
