package report

// The webhook deliveries' headers and their HMAC signature, which receivers check with Verify.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Headers sent with every delivery.
const (
	HeaderSignature = "X-Mailcow-HA-Signature" // t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">
	HeaderEvent     = "X-Mailcow-HA-Event"
	HeaderDelivery  = "X-Mailcow-HA-Delivery"
)

// Sign returns the signature header's value for body at time t.
func Sign(secret, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts + "."))
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signature header against body, and that it is no older than maxAge (0: any age). Receivers
// written in Go can use it; docs/alerts.md shows the same check in shell.
func Verify(secret, body []byte, header string, now time.Time, maxAge time.Duration) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return errors.New("signature header: want t=<unix>,v1=<hex>")
	}
	want := Sign(secret, body, time.Unix(sec, 0))
	if !hmac.Equal([]byte(want), []byte("t="+ts+",v1="+sig)) {
		return errors.New("signature does not match")
	}
	if maxAge > 0 && now.Sub(time.Unix(sec, 0)) > maxAge {
		return fmt.Errorf("signature older than %s", maxAge)
	}
	return nil
}
