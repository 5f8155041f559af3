package signup

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/report"
	"github.com/mailcow-ha/mailcow-ha/stdio"
)

// DefaultConfigPath is where the appliance keeps the portal's configuration.
const DefaultConfigPath = "/etc/mailcow-ha/signup.toml"

// Main runs mailcow-signup: mailcow-signup [--config PATH] [--check]. It returns 2 on a configuration error,
// 1 on a runtime failure.
func Main(ctx context.Context, args []string, io stdio.Stdio) int {
	fs := flag.NewFlagSet("mailcow-signup", flag.ContinueOnError)
	fs.SetOutput(io.Stderr)
	path := fs.String("config", DefaultConfigPath, "configuration file (its own keys, or a [signup] table)")
	check := fs.Bool("check", false, "check the configuration and the secret files, then exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg, err := LoadConfig(*path)
	if err != nil {
		fmt.Fprintf(io.Stderr, "mailcow-signup: %v\n", err)
		return 2
	}
	secrets := config.SecretFiles{Owner: os.Geteuid()}
	key, err := secrets.ReadSecret(cfg.APIKeyFile)
	if err != nil {
		fmt.Fprintf(io.Stderr, "mailcow-signup: signup.api_key_file: %v\n", err)
		return 2
	}
	ckey, err := secrets.ReadSecret(cfg.CaptchaKeyFile)
	if err != nil {
		fmt.Fprintf(io.Stderr, "mailcow-signup: signup.captcha_key_file: %v\n", err)
		return 2
	}
	if len(ckey.Reveal()) < 32 {
		fmt.Fprintf(io.Stderr, "mailcow-signup: signup.captcha_key_file: the key has %d characters; use at least 32 (openssl rand -hex 32)\n", len(ckey.Reveal()))
		return 2
	}
	if *check {
		fmt.Fprintf(io.Stdout, "mailcow-signup: %s ok: %s@%s via %s, listening on %s%s\n", *path, "<user>", cfg.Domain, cfg.MailcowURL, cfg.Listen, cfg.BasePath)
		return 0
	}
	log := report.NewLogger(report.LogOptions{Stderr: io.Stderr, Identifier: "mailcow-signup"})
	mc := &Mailcow{BaseURL: cfg.MailcowURL, Key: key.Reveal(), HTTP: &http.Client{Timeout: 20 * time.Second}}
	srv, err := NewServer(cfg, mc, []byte(ckey.Reveal()), log)
	if err != nil {
		fmt.Fprintf(io.Stderr, "mailcow-signup: %v\n", err)
		return 2
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintf(io.Stderr, "mailcow-signup: signup.listen: %v\n", err)
		return 1
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	}()
	log.Info("mailcow-signup serving", "listen", ln.Addr().String(), "base_path", cfg.BasePath, "domain", cfg.Domain)
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("mailcow-signup stopped", "err", err)
		return 1
	}
	return 0
}
