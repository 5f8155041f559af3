package signup

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCaptcha(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	c := &Captcha{Key: []byte(strings.Repeat("k", 32)), MaxNumber: 5000, TTL: 10 * time.Minute, Now: func() time.Time { return now }}
	ch, err := c.New()
	if err != nil {
		t.Fatal(err)
	}
	if ch.Algorithm != "SHA-256" || ch.MaxNumber != 5000 || !strings.Contains(ch.Salt, "?expires=") || len(ch.Challenge) != 64 {
		t.Fatalf("challenge %+v", ch)
	}
	sol, ok := Solve(ch)
	if !ok {
		t.Fatal("no solution within maxnumber")
	}
	// Another node with the same key verifies it.
	other := &Captcha{Key: c.Key, MaxNumber: 5000, TTL: 10 * time.Minute, Now: c.Now}
	if err := other.Verify(sol.Encode()); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if err := other.Verify(sol.Encode()); !errors.Is(err, ErrCaptchaReplayed) {
		t.Errorf("second use: %v", err)
	}
	for name, tc := range map[string]struct {
		mut  func(s *Solution)
		want error
	}{
		"wrong number":  {func(s *Solution) { s.Number = (s.Number + 1) % 5000 }, ErrCaptchaWrong},
		"other key":     {func(s *Solution) { s.Signature = strings.Repeat("0", 64) }, ErrCaptchaSignature},
		"own challenge": {func(s *Solution) { s.Challenge = hashHex(s.Salt, 7); s.Number = 7 }, ErrCaptchaSignature},
		"longer expiry": {func(s *Solution) { s.Salt = strings.Replace(s.Salt, "?expires=", "?expires=9", 1) }, ErrCaptchaWrong},
		"algorithm":     {func(s *Solution) { s.Algorithm = "MD5" }, ErrCaptchaMalformed},
	} {
		ch, _ := c.New()
		s, _ := Solve(ch)
		tc.mut(&s)
		if err := c.Verify(s.Encode()); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if err := c.Verify("%%%"); !errors.Is(err, ErrCaptchaMalformed) {
		t.Errorf("garbage: %v", err)
	}
	if err := c.Verify(base64.StdEncoding.EncodeToString([]byte(strings.Repeat("{", 5000)))); !errors.Is(err, ErrCaptchaMalformed) {
		t.Errorf("large: %v", err)
	}
	// Expired: solved after its TTL.
	ch, _ = c.New()
	s, _ := Solve(ch)
	now = now.Add(11 * time.Minute)
	if err := c.Verify(s.Encode()); !errors.Is(err, ErrCaptchaExpired) {
		t.Errorf("expired: %v", err)
	}
}

// BenchmarkCaptchaSolve is the work a solver does for the default difficulty, in Go (the browser test measures
// the page's worker).
func BenchmarkCaptchaSolve(b *testing.B) {
	c := &Captcha{Key: []byte(strings.Repeat("k", 32)), MaxNumber: DefaultConfig().Difficulty, TTL: time.Minute}
	for i := 0; i < b.N; i++ {
		ch, _ := c.New()
		if _, ok := Solve(ch); !ok {
			b.Fatal("unsolved")
		}
	}
}
