package signup

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Policy is mailcow's password policy (GET /api/v1/get/passwordpolicy), raised to our floor.
type Policy struct {
	Length      int  // minimum length
	Chars       bool // at least one letter
	SpecialChar bool // at least one character that is not a letter or digit
	LowerUpper  bool // lower and upper case letters
	Numbers     bool // at least one digit
}

// MinLength is the floor for every password the portal accepts or generates.
const MinLength = 16

// Floor raises a policy to ours: at least MinLength characters. Generated passwords also use every class.
func (p Policy) Floor() Policy {
	p.Length = max(p.Length, MinLength)
	return p
}

// Password alphabets: no look-alikes (0/O, 1/l/I) in generated passwords, so that a user can copy one by hand.
const (
	lowerSet   = "abcdefghijkmnopqrstuvwxyz"
	upperSet   = "ABCDEFGHJKLMNPQRSTUVWXYZ"
	digitSet   = "23456789"
	specialSet = "-_.!?#%+=@"
)

// Generate returns a password of length max(p.Length, MinLength, 20) from crypto/rand with at least one character
// of every class, in random order.
func Generate(p Policy) (string, error) {
	n := max(p.Floor().Length, 20)
	sets := []string{lowerSet, upperSet, digitSet, specialSet}
	all := strings.Join(sets, "")
	out := make([]byte, 0, n)
	pick := func(set string) error {
		i, err := rand.Int(rand.Reader, big.NewInt(int64(len(set))))
		if err != nil {
			return fmt.Errorf("password: %w", err)
		}
		out = append(out, set[i.Int64()])
		return nil
	}
	for _, s := range sets {
		if err := pick(s); err != nil {
			return "", err
		}
	}
	for len(out) < n {
		if err := pick(all); err != nil {
			return "", err
		}
	}
	// Fisher–Yates with crypto/rand, so that the class characters are not always first.
	for i := len(out) - 1; i > 0; i-- {
		j, err := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		if err != nil {
			return "", fmt.Errorf("password: %w", err)
		}
		out[i], out[j.Int64()] = out[j.Int64()], out[i]
	}
	return string(out), nil
}

// Check returns the message keys of the rules a password breaks under the floored policy; none means it is
// acceptable.
func Check(pw string, p Policy) []string {
	p = p.Floor()
	var bad []string
	if utf8.RuneCountInString(pw) < p.Length {
		bad = append(bad, "pw_too_short")
	}
	if utf8.RuneCountInString(pw) > 128 {
		bad = append(bad, "pw_too_long")
	}
	var letter, lower, upper, digit, special bool
	for _, r := range pw {
		switch {
		case unicode.IsLower(r):
			letter, lower = true, true
		case unicode.IsUpper(r):
			letter, upper = true, true
		case unicode.IsLetter(r):
			letter = true
		case unicode.IsDigit(r):
			digit = true
		case unicode.IsControl(r):
			bad = append(bad, "pw_control")
		default:
			special = true
		}
	}
	if p.Chars && !letter {
		bad = append(bad, "pw_need_letter")
	}
	if p.LowerUpper && !(lower && upper) {
		bad = append(bad, "pw_need_case")
	}
	if p.Numbers && !digit {
		bad = append(bad, "pw_need_digit")
	}
	if p.SpecialChar && !special {
		bad = append(bad, "pw_need_special")
	}
	return bad
}
