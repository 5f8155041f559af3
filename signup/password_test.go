package signup

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestGenerate(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range []Policy{{}, {Length: 6, Chars: true}, {Length: 24, SpecialChar: true, LowerUpper: true, Numbers: true}} {
		for range 500 {
			pw, err := Generate(p)
			if err != nil {
				t.Fatal(err)
			}
			if len(pw) < max(p.Length, 20) {
				t.Fatalf("%q shorter than %d", pw, max(p.Length, 20))
			}
			all := Policy{Length: p.Length, Chars: true, SpecialChar: true, LowerUpper: true, Numbers: true}
			if bad := Check(pw, all); len(bad) > 0 {
				t.Fatalf("%q breaks %v", pw, bad)
			}
			if strings.ContainsAny(pw, "0O1lI") {
				t.Fatalf("%q has a look-alike", pw)
			}
			if seen[pw] {
				t.Fatalf("%q twice", pw)
			}
			seen[pw] = true
		}
	}
}

func TestCheck(t *testing.T) {
	all := Policy{Chars: true, SpecialChar: true, LowerUpper: true, Numbers: true}
	for pw, want := range map[string][]string{
		"Short1!":                    {"pw_too_short"},
		"alllowercaseletters1!":      {"pw_need_case"},
		"NoDigitsAtAllInThis!":       {"pw_need_digit"},
		"NoSymbolsAtAll123456":       {"pw_need_special"},
		"1234567890123456!!!!":       {"pw_need_letter", "pw_need_case"},
		"Fine-Password-1234":         nil,
		"Schöne-Grüße-2026-aus-Köln": nil,
		strings.Repeat("aA1!", 33):   {"pw_too_long"},
		"Tab\tInside-Password-1234":  {"pw_control"},
	} {
		if got := Check(pw, all); !slices.Equal(got, want) {
			t.Errorf("%q: %v, want %v", pw, got, want)
		}
	}
	// mailcow's own policy is raised to our floor of 16 characters.
	if got := Check("Abcdef1!", Policy{Length: 6}); !slices.Equal(got, []string{"pw_too_short"}) {
		t.Errorf("floor: %v", got)
	}
}

func TestValidateUser(t *testing.T) {
	r := DefaultReserved()
	for u, want := range map[string]string{
		"jane.doe": "", "j_d-2026": "", "abc": "",
		"ab": "user_length", strings.Repeat("a", 33): "user_length",
		".jane": "user_edge", "jane-": "user_edge", "ja..ne": "user_double", "ja._ne": "user_double",
		"jäne": "user_chars", "ja ne": "user_chars", "jane+x": "user_chars",
		"postmaster": "user_reserved", "abuse": "user_reserved", "admin": "user_reserved", "noreply": "user_reserved",
		"mailer-daemon": "user_reserved", "root": "user_reserved", "owner-list": "user_reserved",
	} {
		if got := ValidateUser(u, r); got != want {
			t.Errorf("%q: %q, want %q", u, got, want)
		}
	}
	if NormalizeUser("  Jane.Doe ") != "jane.doe" {
		t.Error("normalize")
	}
	if got := ValidateUser("team", []string{"team"}); got != "user_reserved" {
		t.Errorf("configured list: %q", got)
	}
}

func TestConfigFiles(t *testing.T) {
	c, err := LoadConfig("../rootfs/etc/mailcow-ha/signup.toml.example")
	if err != nil {
		t.Fatalf("example: %v", err)
	}
	if c.Domain != "example.org" || c.SendLimit != 50 || c.Difficulty != DefaultConfig().Difficulty {
		t.Errorf("example: %+v", c)
	}
	dir := t.TempDir()
	for name, tc := range map[string]struct{ src, want string }{
		"unknown key": {"domain = \"example.org\"\ndomian = \"x\"\n", "unknown key domian"},
		"bad values": {"domain = \"example\"\nmailcow_url = \"ftp://x\"\nhostname = \"m\"\napi_key_file = \"/k\"\ncaptcha_key_file = \"/c\"\ndifficulty = 5\n",
			"signup.domain: a mail domain"},
		"table":  {"[signup]\ndomain = \"example.org\"\nhostname = \"mail.example.org\"\nmailcow_url = \"https://mail.example.org\"\napi_key_file = \"/k\"\ncaptcha_key_file = \"/c\"\n[other]\nx = 1\n", ""},
		"syntax": {"domain = \n", "toml"},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".toml")
		os.WriteFile(p, []byte(tc.src), 0o600)
		_, err := LoadConfig(p)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}
