package config

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
)

// MaxUserData is Hetzner's limit for user-data, and ours for any configuration payload.
const MaxUserData = 32 << 10

// Marker is the first line that the docs tell users to put at the top of their user-data.
const Marker = "# mailcow-ha"

// cloudInitPrefixes are the first lines that make cloud-init itself act on user-data: it would run, include or
// fetch it and never hand it to us. Compared case-insensitively.
var cloudInitPrefixes = []string{"#!", "#include", "#cloud-config", "#cloud-boothook", "#part-handler", "## template"}

// PayloadError is a configuration payload that is not TOML for us.
type PayloadError struct{ Msg string }

func (e *PayloadError) Error() string { return e.Msg }

func payloadErr(format string, args ...any) error {
	return &PayloadError{Msg: fmt.Sprintf(format, args...)}
}

// DecodePayload turns user-data (or any configuration file) into TOML text. It accepts gzip, and base64 when the
// whole payload is valid base64; it takes the TOML part out of MIME multipart; it refuses payloads over 32 KiB and
// any that cloud-init would act on itself.
func DecodePayload(data []byte) ([]byte, error) {
	if len(data) > MaxUserData {
		return nil, payloadErr("payload is %d bytes; user-data holds at most %d", len(data), MaxUserData)
	}
	for range 2 { // base64 around gzip, or gzip alone
		switch {
		case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
			out, err := gunzip(data)
			if err != nil {
				return nil, err
			}
			data = out
			continue
		case isBase64(data):
			out, err := base64.StdEncoding.DecodeString(string(stripNewlines(data)))
			if err == nil {
				data = out
				continue
			}
		}
		break
	}
	if len(data) > MaxUserData {
		return nil, payloadErr("decoded payload is %d bytes; at most %d", len(data), MaxUserData)
	}
	if isMIME(data) {
		part, err := tomlPart(data)
		if err != nil {
			return nil, err
		}
		data = part
	}
	if err := refuseCloudInit(data); err != nil {
		return nil, err
	}
	return data, nil
}

func gunzip(data []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, payloadErr("gzip payload: %v", err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, MaxUserData+1))
	if err != nil {
		return nil, payloadErr("gzip payload: %v", err)
	}
	if len(out) > MaxUserData {
		return nil, payloadErr("gzip payload expands beyond %d bytes", MaxUserData)
	}
	return out, nil
}

func stripNewlines(b []byte) []byte {
	return bytes.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, bytes.TrimSpace(b))
}

// isBase64 reports whether the whole payload, less line breaks, is standard base64.
func isBase64(b []byte) bool {
	s := stripNewlines(b)
	if len(s) == 0 || len(s)%4 != 0 {
		return false
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	return true
}

func isMIME(b []byte) bool {
	head := strings.ToLower(string(b[:min(len(b), 64)]))
	return strings.HasPrefix(head, "content-type:") || strings.HasPrefix(head, "mime-version:")
}

// tomlPart returns the first part of a MIME multipart message whose type is TOML (application/toml or
// text/x-toml), or a text/plain part that starts with the marker.
func tomlPart(b []byte) ([]byte, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(b))
	if err != nil {
		return nil, payloadErr("MIME user-data: %v", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || !strings.HasPrefix(mt, "multipart/") {
		return nil, payloadErr("MIME user-data must be multipart with a TOML part (Content-Type: application/toml)")
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil, payloadErr("MIME multipart user-data has no TOML part: add one with Content-Type: application/toml")
		}
		if err != nil {
			return nil, payloadErr("MIME multipart user-data: %v", err)
		}
		pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		body, err := io.ReadAll(io.LimitReader(p, MaxUserData+1))
		if err != nil {
			return nil, payloadErr("MIME part: %v", err)
		}
		if strings.EqualFold(p.Header.Get("Content-Transfer-Encoding"), "base64") {
			if body, err = base64.StdEncoding.DecodeString(string(stripNewlines(body))); err != nil {
				return nil, payloadErr("MIME part: invalid base64: %v", err)
			}
		}
		switch {
		case pt == "application/toml" || pt == "text/x-toml",
			pt == "text/plain" && bytes.HasPrefix(bytes.TrimSpace(body), []byte(Marker)):
			return body, nil
		}
	}
}

// refuseCloudInit rejects a payload whose first line cloud-init would act on.
func refuseCloudInit(b []byte) error {
	first, _ := bufio.NewReader(bytes.NewReader(b)).ReadString('\n')
	first = strings.ToLower(strings.TrimRight(first, "\r\n"))
	for _, p := range cloudInitPrefixes {
		if strings.HasPrefix(first, p) {
			return payloadErr("line 1: starts with %q, which cloud-init runs or fetches itself and never hands to "+
				"mailcow-ha; start the file with %q followed by TOML", p, Marker)
		}
	}
	return nil
}
