package signup

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
)

// Config is the portal's configuration: its own TOML file, or the [signup] table of the agent's file.
type Config struct {
	Listen         string   `toml:"listen"`           // address to serve on; mailcow's nginx proxies BasePath here
	BasePath       string   `toml:"base_path"`        // "/signup"
	Domain         string   `toml:"domain"`           // the mailboxes' domain
	Hostname       string   `toml:"hostname"`         // mail server name shown in the client settings
	MailcowURL     string   `toml:"mailcow_url"`      // mailcow's API, https://mail.example.org
	APIKeyFile     string   `toml:"api_key_file"`     // mode 0600
	CaptchaKeyFile string   `toml:"captcha_key_file"` // mode 0600; the same on every node
	QuotaMiB       int      `toml:"quota_mib"`
	OnHold         bool     `toml:"on_hold"`     // create mailboxes that receive but cannot log in yet
	SendLimit      int      `toml:"send_limit"`  // messages per SendFrame for a new mailbox; 0: mailcow's default
	SendFrame      string   `toml:"send_frame"`  // s, m, h or d
	Reserved       []string `toml:"reserved"`    // local parts nobody may take; default DefaultReserved()
	Difficulty     int64    `toml:"difficulty"`  // the captcha's MaxNumber
	CaptchaTTL     Duration `toml:"captcha_ttl"` // how long a challenge stays valid
	// CaptchaUsedFile remembers the solved challenges across restarts and nodes: on the Volume, which moves with
	// the portal to the next MASTER.
	CaptchaUsedFile string   `toml:"captcha_used_file"`
	Language        string   `toml:"language"`        // default language
	TrustedProxies  []string `toml:"trusted_proxies"` // networks whose X-Real-IP is believed (mailcow's nginx)
	PerIP           float64  `toml:"per_ip_per_hour"` // mailbox creations per source address and hour
	PerNet          float64  `toml:"per_64_per_hour"` // per /64 (IPv6) or /24 (IPv4) and hour
	PerWide         float64  `toml:"per_48_per_hour"` // per /48 (IPv6: one site) or /16 (IPv4) and hour
	PerHour         float64  `toml:"per_hour"`        // all sources together, per hour: the cap (alerts when hit)
}

// Duration is a TOML duration string such as "10m"; it is the agent configuration's type (one copy of the code).
type Duration = config.Duration

// NginxMailcow is mailcow's nginx on its Docker network: the appliance's override pins it there (mailcow's own
// compose file gives it no fixed address), so that the portal believes X-Real-IP from it alone and the firewall lets
// only it reach the portal.
const NginxMailcow = "172.22.1.247"

// DefaultConfig is the configuration before the file is read.
func DefaultConfig() Config {
	return Config{Listen: "127.0.0.1:8740", BasePath: "/signup", QuotaMiB: 1024, SendFrame: "h",
		Difficulty: 50000, CaptchaTTL: Duration(10 * time.Minute), Language: "en",
		CaptchaUsedFile: "/var/lib/mailcow-ha/data/signup/captcha-used",
		TrustedProxies:  []string{"127.0.0.0/8", "::1/128", NginxMailcow + "/32"},
		PerIP:           3, PerNet: 10, PerWide: 30, PerHour: 100}
}

// LoadConfig reads a TOML file: either the portal's own keys at the top, or a [signup] table. Unknown keys are
// errors that name the key.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	c := DefaultConfig()
	var probe map[string]any
	if _, err := toml.Decode(string(b), &probe); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	_, inTable := probe["signup"]
	var md toml.MetaData
	if inTable {
		wrap := struct {
			Signup *Config `toml:"signup"`
		}{&c}
		md, err = toml.Decode(string(b), &wrap)
	} else {
		md, err = toml.Decode(string(b), &c)
	}
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	var unknown []string
	for _, k := range md.Undecoded() {
		if inTable && (len(k) == 0 || k[0] != "signup") {
			continue // the agent's own tables
		}
		unknown = append(unknown, k.String())
	}
	if len(unknown) > 0 {
		return Config{}, fmt.Errorf("%s: unknown key %s", path, strings.Join(unknown, ", "))
	}
	return c, c.Validate()
}

// Validate names every bad key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("signup.%s: "+format, append([]any{key}, a...)...))
	}
	if c.Domain == "" || strings.ContainsAny(c.Domain, "@/ ") || !strings.Contains(c.Domain, ".") {
		bad("domain", "a mail domain such as example.org, got %q", c.Domain)
	}
	if u, err := url.Parse(c.MailcowURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("mailcow_url", "an http(s) URL of mailcow, got %q", c.MailcowURL)
	}
	if c.APIKeyFile == "" {
		bad("api_key_file", "missing")
	}
	if c.CaptchaKeyFile == "" {
		bad("captcha_key_file", "missing")
	}
	if !strings.HasPrefix(c.BasePath, "/") || strings.HasSuffix(c.BasePath, "/") && c.BasePath != "/" {
		bad("base_path", "a path such as /signup, got %q", c.BasePath)
	}
	if c.QuotaMiB < 1 {
		bad("quota_mib", "at least 1, got %d", c.QuotaMiB)
	}
	if c.SendLimit < 0 || !slices.Contains([]string{"s", "m", "h", "d"}, c.SendFrame) {
		bad("send_limit", "a count ≥ 0 per send_frame s, m, h or d")
	}
	if c.Difficulty < 1000 || c.Difficulty > 10_000_000 {
		bad("difficulty", "between 1000 and 10000000, got %d", c.Difficulty)
	}
	if c.CaptchaTTL < Duration(time.Minute) {
		bad("captcha_ttl", "at least 1m")
	}
	if !filepath.IsAbs(c.CaptchaUsedFile) {
		bad("captcha_used_file", "an absolute path on the Volume, got %q", c.CaptchaUsedFile)
	}
	for i, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			bad(fmt.Sprintf("trusted_proxies[%d]", i), "%v", err)
		}
	}
	if c.PerIP <= 0 || c.PerNet <= 0 || c.PerWide <= 0 || c.PerHour <= 0 {
		bad("per_ip_per_hour", "rates must be positive (per_ip_per_hour, per_64_per_hour, per_48_per_hour, per_hour)")
	}
	if c.Hostname == "" {
		bad("hostname", "the mail server's name for the client settings, such as mail.example.org")
	}
	return errors.Join(errs...)
}
