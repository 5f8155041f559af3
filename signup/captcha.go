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
	"regexp"
	"strconv"
	"sync"
	"time"
)

// The captcha is proof of work in the ALTCHA protocol's shape: the server picks a secret number n ≤ MaxNumber
// and a salt, and sends challenge = hex(SHA-256(salt + n)) with an HMAC signature; the browser tries numbers until
// the hash matches and sends back the number. Any node that knows the key can verify (the signature), the salt
// carries the expiry, and a solved challenge is accepted once.
//
// The signature covers the salt, the challenge and the difficulty, each in a field of its own: the hash has no
// separator between the salt and the number (the widget computes it so), and a signature over the challenge alone
// let digits move from the number into the salt's expiry, which kept the hash and pushed the expiry centuries
// ahead. An expiry further out than the TTL is refused as well, and "used once" is kept in a store that outlives
// the process (a file on the Volume, which moves with the portal to the next MASTER).

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
	// Used remembers the solved challenges until they expire; default in memory (one process only).
	Used UsedStore

	mu  sync.Mutex
	mem *memUsed
}

// Captcha errors; the page shows one neutral text for all of them.
var (
	ErrCaptchaMalformed = errors.New("captcha: malformed solution")
	ErrCaptchaSignature = errors.New("captcha: bad signature")
	ErrCaptchaExpired   = errors.New("captcha: expired")
	ErrCaptchaWrong     = errors.New("captcha: wrong number")
	ErrCaptchaReplayed  = errors.New("captcha: already used")
	ErrCaptchaStore     = errors.New("captcha: the used-challenges store failed")
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
	return Challenge{Algorithm: "SHA-256", Challenge: ch, MaxNumber: c.MaxNumber, Salt: salt, Signature: c.sign(salt, ch, c.MaxNumber)}, nil
}

func hashHex(salt string, n int64) string {
	sum := sha256.Sum256([]byte(salt + strconv.FormatInt(n, 10)))
	return hex.EncodeToString(sum[:])
}

func (c *Captcha) sign(salt, challenge string, maxNumber int64) string {
	m := hmac.New(sha256.New, c.Key)
	fmt.Fprintf(m, "mailcow-signup-captcha-v2\n%s\n%s\n%d", salt, challenge, maxNumber)
	return hex.EncodeToString(m.Sum(nil))
}

// saltForm is the only salt New issues: 24 hex digits of nonce and a 10-digit expiry.
var saltForm = regexp.MustCompile(`^[0-9a-f]{24}\?expires=([0-9]{10})$`)

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
	if !hmac.Equal([]byte(c.sign(s.Salt, s.Challenge, c.MaxNumber)), []byte(s.Signature)) {
		return ErrCaptchaSignature
	}
	m := saltForm.FindStringSubmatch(s.Salt)
	if m == nil {
		return ErrCaptchaMalformed
	}
	exp, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return ErrCaptchaMalformed
	}
	now := c.now()
	if now.Unix() > exp {
		return ErrCaptchaExpired
	}
	if exp > now.Add(c.TTL+time.Minute).Unix() {
		return ErrCaptchaMalformed // signed, yet further out than any challenge this key issued with this TTL
	}
	if s.Number < 0 || s.Number > c.MaxNumber || hashHex(s.Salt, s.Number) != s.Challenge {
		return ErrCaptchaWrong
	}
	fresh, err := c.store().Use(s.Challenge, time.Unix(exp, 0), now)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCaptchaStore, err)
	}
	if !fresh {
		return ErrCaptchaReplayed
	}
	return nil
}

func (c *Captcha) store() UsedStore {
	if c.Used != nil {
		return c.Used
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mem == nil {
		c.mem = &memUsed{m: map[string]time.Time{}}
	}
	return c.mem
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
