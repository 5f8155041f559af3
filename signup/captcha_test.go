package signup

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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
		"longer expiry": {func(s *Solution) { s.Salt = strings.Replace(s.Salt, "?expires=", "?expires=9", 1) }, ErrCaptchaSignature},
		// The hash is SHA-256(salt + n) with no separator: moving n's leading digits to the end of the salt keeps
		// the hash (and the challenge), and pushes the expiry out by orders of magnitude. The signature covers the
		// salt, so the move breaks it.
		"digits moved into the expiry": {func(s *Solution) {
			digits := strconv.FormatInt(s.Number, 10)
			if len(digits) < 2 {
				s.Number += 10 // a one-digit number cannot be split; any change shows as wrong below
				return
			}
			s.Salt += digits[:len(digits)-1]
			s.Number, _ = strconv.ParseInt(digits[len(digits)-1:], 10, 64)
		}, ErrCaptchaSignature},
		"algorithm": {func(s *Solution) { s.Algorithm = "MD5" }, ErrCaptchaMalformed},
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
	// A salt of another form, or an expiry beyond the TTL, signed with the key (a key leaked with a bug, an old
	// build): refused all the same.
	for name, salt := range map[string]string{
		"far expiry":  "00112233445566778899aabb?expires=" + strconv.FormatInt(now.Add(24*time.Hour).Unix(), 10),
		"extra field": "00112233445566778899aabb?expires=" + strconv.FormatInt(now.Add(time.Minute).Unix(), 10) + "&x=1",
	} {
		n := int64(42)
		ch := hashHex(salt, n)
		sol := Solution{Algorithm: "SHA-256", Challenge: ch, Number: n, Salt: salt, Signature: c.sign(salt, ch, c.MaxNumber)}
		if err := c.Verify(sol.Encode()); !errors.Is(err, ErrCaptchaMalformed) {
			t.Errorf("%s: %v, want %v", name, err, ErrCaptchaMalformed)
		}
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

// A used challenge stays used across a restart and on the next node: the store is a file (on the Volume).
func TestCaptchaReplayAcrossRestarts(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "signup", "captcha-used")
	key := []byte(strings.Repeat("k", 32))
	first := &Captcha{Key: key, MaxNumber: 2000, TTL: 10 * time.Minute, Now: func() time.Time { return now }, Used: NewFileUsed(path)}
	ch, _ := first.New()
	sol, _ := Solve(ch)
	if err := first.Verify(sol.Encode()); err != nil {
		t.Fatal(err)
	}
	// The portal restarted (or runs on the next MASTER, with the same Volume): a new process, a new store.
	second := &Captcha{Key: key, MaxNumber: 2000, TTL: 10 * time.Minute, Now: first.Now, Used: NewFileUsed(path)}
	if err := second.Verify(sol.Encode()); !errors.Is(err, ErrCaptchaReplayed) {
		t.Fatalf("after a restart: %v, want %v", err, ErrCaptchaReplayed)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the store: %v %v", fi, err)
	}
	// Expired entries go: after many uses past their expiry the file is rewritten with the live ones only.
	for i := range 200 {
		now = now.Add(11 * time.Minute)
		if fresh, err := second.Used.Use(fmt.Sprintf("c%d", i), now.Add(10*time.Minute), now); !fresh || err != nil {
			t.Fatalf("use %d: %v %v", i, fresh, err)
		}
	}
	b, _ := os.ReadFile(path)
	if lines := strings.Count(string(b), "\n"); lines > 130 {
		t.Fatalf("the store keeps %d lines for 1 live entry", lines)
	}
	// A store that cannot be written refuses the captcha (it cannot promise "once"); the error says why.
	bad := &Captcha{Key: key, MaxNumber: 2000, TTL: 10 * time.Minute, Now: first.Now, Used: NewFileUsed("/proc/no/such/dir/used")}
	ch, _ = bad.New()
	sol, _ = Solve(ch)
	if err := bad.Verify(sol.Encode()); !errors.Is(err, ErrCaptchaStore) {
		t.Fatalf("an unwritable store: %v, want %v", err, ErrCaptchaStore)
	}
	// A corrupt store names the line.
	os.WriteFile(path, []byte("abc 123\nnonsense\n"), 0o600)
	if _, err := NewFileUsed(path).Use("x", now, now); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("a corrupt store: %v", err)
	}
}
