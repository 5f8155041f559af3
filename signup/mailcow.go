package signup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
)

// Mailcow is the client of mailcow's API (X-API-Key). mailcow answers HTTP 200 even when an action fails, with
// "type": "danger" and a message key; a wrong key is 401, and repeated 401s make mailcow's firewall ban the
// caller, so after the first 401 the client refuses every further call until it is restarted.
type Mailcow struct {
	BaseURL string // https://mail.example.org
	Key     string // from a 0600 file; never logged
	HTTP    *http.Client
	// OnUnauthorized runs once, at the first 401 (the portal alerts: an operator must fix the key).
	OnUnauthorized func()

	locked atomic.Bool
}

// Errors of the API. A *DangerError carries mailcow's message key.
var (
	ErrUnauthorized = errors.New("mailcow API: the API key was refused (HTTP 401); no further calls until restart")
	ErrLocked       = errors.New("mailcow API: disabled after a refused API key")
)

// DangerError is an action mailcow refused with type "danger" or "error".
type DangerError struct {
	Msg []string // the message key first, such as "object_exists", then its arguments
}

func (e *DangerError) Error() string { return "mailcow API: " + strings.Join(e.Msg, " ") }

// Key returns the message key ("object_exists", "password_complexity"…).
func (e *DangerError) Key() string {
	if len(e.Msg) == 0 {
		return ""
	}
	return e.Msg[0]
}

// NewMailbox is the body of POST /api/v1/add/mailbox.
type NewMailbox struct {
	LocalPart string   `json:"local_part"`
	Domain    string   `json:"domain"`
	Name      string   `json:"name"`
	Password  string   `json:"password"`
	Password2 string   `json:"password2"`
	Quota     string   `json:"quota"`  // MiB
	Active    string   `json:"active"` // "1", or "2" (on hold: receives, cannot log in)
	Tags      []string `json:"tags"`
	// ForcePWUpdate stays "0": the user just chose or saved the password.
	ForcePWUpdate string `json:"force_pw_update"`
	TLSEnforceIn  string `json:"tls_enforce_in"`
	TLSEnforceOut string `json:"tls_enforce_out"`
}

// String hides the passwords (for logs and %v).
func (m NewMailbox) String() string {
	return fmt.Sprintf("{%s@%s name=%q quota=%s active=%s tags=%v}", m.LocalPart, m.Domain, m.Name, m.Quota, m.Active, m.Tags)
}

// apiResult is one element of mailcow's answer to an action.
type apiResult struct {
	Type string          `json:"type"`
	Msg  json.RawMessage `json:"msg"`
}

func (c *Mailcow) do(ctx context.Context, method, path string, body any, out any) error {
	if c.locked.Load() {
		return ErrLocked
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, rd)
	if err != nil {
		return fmt.Errorf("mailcow API: %w", err)
	}
	req.Header.Set("X-API-Key", c.Key)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is not secret, but keep errors short
		}
		return fmt.Errorf("mailcow API %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("mailcow API %s %s: %w", method, path, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		if c.locked.CompareAndSwap(false, true) && c.OnUnauthorized != nil {
			c.OnUnauthorized()
		}
		return ErrUnauthorized
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("mailcow API %s %s: HTTP %d", method, path, resp.StatusCode)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("mailcow API %s %s: not the expected JSON: %w", method, path, err)
	}
	return nil
}

// action posts an action and turns a "danger" or "error" answer into a *DangerError.
func (c *Mailcow) action(ctx context.Context, path string, body any) error {
	var raw json.RawMessage
	if err := c.do(ctx, http.MethodPost, path, body, &raw); err != nil {
		return err
	}
	var results []apiResult
	if err := json.Unmarshal(raw, &results); err != nil {
		// A single object, as some versions answer.
		var one apiResult
		if err := json.Unmarshal(raw, &one); err != nil {
			return fmt.Errorf("mailcow API %s: unexpected answer", path)
		}
		results = []apiResult{one}
	}
	if len(results) == 0 {
		return fmt.Errorf("mailcow API %s: empty answer", path)
	}
	for _, r := range results {
		if r.Type != "success" {
			return &DangerError{Msg: msgStrings(r.Msg)}
		}
	}
	return nil
}

// msgStrings reads mailcow's "msg", which is a string or an array of strings.
func msgStrings(raw json.RawMessage) []string {
	var list []any
	if json.Unmarshal(raw, &list) == nil {
		out := make([]string, 0, len(list))
		for _, v := range list {
			out = append(out, fmt.Sprint(v))
		}
		return out
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []string{s}
	}
	return []string{string(raw)}
}

// AddMailbox creates a mailbox.
func (c *Mailcow) AddMailbox(ctx context.Context, m NewMailbox) error {
	return c.action(ctx, "/api/v1/add/mailbox", m)
}

// SetRateLimit limits how much a mailbox may send (value messages per frame: s, m, h or d).
func (c *Mailcow) SetRateLimit(ctx context.Context, address string, value int, frame string) error {
	body := map[string]any{"items": []string{address}, "attr": map[string]string{"rl_value": strconv.Itoa(value), "rl_frame": frame}}
	return c.action(ctx, "/api/v1/edit/rl-mbox", body)
}

// MailboxExists asks whether a mailbox exists (mailcow answers {} for none).
func (c *Mailcow) MailboxExists(ctx context.Context, address string) (bool, error) {
	var m map[string]any
	if err := c.do(ctx, http.MethodGet, "/api/v1/get/mailbox/"+url.PathEscape(address), nil, &m); err != nil {
		return false, err
	}
	return len(m) > 0, nil
}

// PasswordPolicy reads mailcow's password policy; its values come as strings ("6", "1").
func (c *Mailcow) PasswordPolicy(ctx context.Context) (Policy, error) {
	var m map[string]any
	if err := c.do(ctx, http.MethodGet, "/api/v1/get/passwordpolicy", nil, &m); err != nil {
		return Policy{}, err
	}
	num := func(k string) int {
		n, _ := strconv.Atoi(fmt.Sprint(m[k]))
		return n
	}
	return Policy{Length: num("length"), Chars: num("chars") == 1, SpecialChar: num("special_chars") == 1,
		LowerUpper: num("lowerupper") == 1, Numbers: num("numbers") == 1}, nil
}
