// Package signup is the self-service sign-up portal (mailcow-signup): a page that creates a mailbox on the
// cluster's domain through mailcow's API, with a proof-of-work captcha of our own, a generated strong password,
// several languages, light and dark themes, and mailcow's look.
package signup

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// The captcha is proof of work in the ALTCHA protocol's shape: the server picks a secret number n ≤ MaxNumber
// and a salt, and sends challenge = hex(SHA-256(salt + n)) with an HMAC signature of the challenge; the browser
// tries numbers until the hash matches and sends back the number. Any node that knows the key can verify
// (the signature), the salt carries the expiry, and a solved challenge is accepted once.

// Challenge is what the widget fetches.
type Challenge struct {
	Algorithm string `json:"algorithm"`
	Challenge string `json:"challenge"`
	MaxNumber int64  `json:"maxnumber"`
	Salt      string `json:"salt"`
	Signature string `json:"signature"`
}

// Solution is what the widget sends back (base64 JSON in the form field "altcha").
type Solution struct {
	Algorithm string `json:"algorithm"`
	Challenge string `json:"challenge"`
	Number    int64  `json:"number"`
	Salt      string `json:"salt"`
	Signature string `json:"signature"`
}

// Captcha issues and verifies challenges.
type Captcha struct {
	Key       []byte        // HMAC key, the same on every node
	MaxNumber int64         // difficulty: the expected work is MaxNumber/2 hashes
	TTL       time.Duration // how long a challenge may be solved and used
	Now       func() time.Time

	mu   sync.Mutex
	used map[string]time.Time // challenge → expiry
}

// Captcha errors; the page shows one neutral text for all of them.
var (
	ErrCaptchaMalformed = errors.New("captcha: malformed solution")
	ErrCaptchaSignature = errors.New("captcha: bad signature")
	ErrCaptchaExpired   = errors.New("captcha: expired")
	ErrCaptchaWrong     = errors.New("captcha: wrong number")
	ErrCaptchaReplayed  = errors.New("captcha: already used")
)

func (c *Captcha) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// New issues a challenge.
func (c *Captcha) New() (Challenge, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(c.MaxNumber+1))
	if err != nil {
		return Challenge{}, fmt.Errorf("captcha: %w", err)
	}
	nonce := make([]byte, 12)
	if _, err := rand.Read(nonce); err != nil {
		return Challenge{}, fmt.Errorf("captcha: %w", err)
	}
	salt := hex.EncodeToString(nonce) + "?expires=" + strconv.FormatInt(c.now().Add(c.TTL).Unix(), 10)
	ch := hashHex(salt, n.Int64())
	return Challenge{Algorithm: "SHA-256", Challenge: ch, MaxNumber: c.MaxNumber, Salt: salt, Signature: c.sign(ch)}, nil
}

func hashHex(salt string, n int64) string {
	sum := sha256.Sum256([]byte(salt + strconv.FormatInt(n, 10)))
	return hex.EncodeToString(sum[:])
}

func (c *Captcha) sign(challenge string) string {
	m := hmac.New(sha256.New, c.Key)
	m.Write([]byte(challenge))
	return hex.EncodeToString(m.Sum(nil))
}

// Verify checks a solution (the form's base64 JSON) and marks it used.
func (c *Captcha) Verify(payload string) error {
	raw, err := base64.StdEncoding.DecodeString(payload)
	if err != nil || len(raw) > 2048 {
		return ErrCaptchaMalformed
	}
	var s Solution
	if err := json.Unmarshal(raw, &s); err != nil || s.Algorithm != "SHA-256" {
		return ErrCaptchaMalformed
	}
	if !hmac.Equal([]byte(c.sign(s.Challenge)), []byte(s.Signature)) {
		return ErrCaptchaSignature
	}
	u, err := url.ParseQuery(afterQuestion(s.Salt))
	if err != nil {
		return ErrCaptchaMalformed
	}
	exp, err := strconv.ParseInt(u.Get("expires"), 10, 64)
	if err != nil {
		return ErrCaptchaMalformed
	}
	now := c.now()
	if now.Unix() > exp {
		return ErrCaptchaExpired
	}
	if s.Number < 0 || s.Number > c.MaxNumber || hashHex(s.Salt, s.Number) != s.Challenge {
		return ErrCaptchaWrong
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.used == nil {
		c.used = map[string]time.Time{}
	}
	for k, e := range c.used {
		if now.After(e) {
			delete(c.used, k)
		}
	}
	if _, ok := c.used[s.Challenge]; ok {
		return ErrCaptchaReplayed
	}
	c.used[s.Challenge] = time.Unix(exp, 0)
	return nil
}

func afterQuestion(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '?' {
			return s[i+1:]
		}
	}
	return ""
}

// Solve finds the number for a challenge, as the browser does (for tests and the benchmark).
func Solve(ch Challenge) (Solution, bool) {
	for n := int64(0); n <= ch.MaxNumber; n++ {
		if hashHex(ch.Salt, n) == ch.Challenge {
			return Solution{Algorithm: ch.Algorithm, Challenge: ch.Challenge, Number: n, Salt: ch.Salt, Signature: ch.Signature}, true
		}
	}
	return Solution{}, false
}

// Encode is the form field's value for a solution.
func (s Solution) Encode() string {
	b, _ := json.Marshal(s)
	return base64.StdEncoding.EncodeToString(b)
}
