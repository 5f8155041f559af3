package config

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"time"
)

// Sources says where a node's configuration comes from. Read tries, in this order: Path (when given: only it;
// "-" is Stdin), DefaultPath, UserDataPath (cloud-init's copy of the user-data), then the metadata service's
// <MetadataURL>/userdata, retried until MetadataDeadline.
type Sources struct {
	Path             string
	Stdin            io.Reader
	DefaultPath      string
	UserDataPath     string
	MetadataURL      string
	MetadataDeadline time.Duration
	HTTPClient       *http.Client
}

// DefaultSources returns the locations on an appliance node.
func DefaultSources() Sources {
	return Sources{
		DefaultPath:      DefaultPath,
		UserDataPath:     DefaultUserDataPath,
		MetadataURL:      DefaultMetadataURL,
		MetadataDeadline: 60 * time.Second,
	}
}

// Payload is a configuration as read, already decoded to TOML text.
type Payload struct {
	Name string // where it came from, as problems name it
	Data []byte
}

// ErrNoConfig means that none of the sources had a configuration.
var ErrNoConfig = errors.New("no configuration found")

// Read returns the first configuration found, decoded with DecodePayload.
func (s Sources) Read(ctx context.Context) (Payload, error) {
	if s.Path != "" {
		if s.Path == "-" {
			if s.Stdin == nil {
				return Payload{}, errors.New("stdin: no input")
			}
			b, err := io.ReadAll(io.LimitReader(s.Stdin, MaxUserData+1))
			if err != nil {
				return Payload{}, fmt.Errorf("read stdin: %w", err)
			}
			return decodeAs("-", b)
		}
		return readFile(s.Path)
	}
	for _, p := range []string{s.DefaultPath, s.UserDataPath} {
		if p == "" {
			continue
		}
		pl, err := readFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		return pl, err
	}
	if s.MetadataURL == "" {
		return Payload{}, ErrNoConfig
	}
	return s.readMetadata(ctx)
}

func readFile(path string) (Payload, error) {
	f, err := os.Open(path)
	if err != nil {
		return Payload{}, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxUserData+1))
	if err != nil {
		return Payload{}, fmt.Errorf("read %s: %w", path, err)
	}
	return decodeAs(path, b)
}

func decodeAs(name string, b []byte) (Payload, error) {
	out, err := DecodePayload(b)
	if err != nil {
		return Payload{Name: name}, fmt.Errorf("%s: %w", name, err)
	}
	return Payload{Name: name, Data: out}, nil
}

// readMetadata fetches the user-data from the metadata service and decodes it.
func (s Sources) readMetadata(ctx context.Context) (Payload, error) {
	b, err := FetchUserData(ctx, s.HTTPClient, s.MetadataURL, s.MetadataDeadline)
	if err != nil {
		return Payload{}, err
	}
	return decodeAs("metadata userdata", b)
}

// FetchUserData returns the raw user-data from <baseURL>/userdata (baseURL such as
// http://169.254.169.254/hetzner/v1), retrying transient failures with backoff until deadline (default 60 s). An
// answer of 404 or an empty body means that the server has no user-data, which is final (ErrNoConfig).
func FetchUserData(ctx context.Context, client *http.Client, baseURL string, deadline time.Duration) ([]byte, error) {
	url := strings.TrimRight(baseURL, "/") + "/userdata"
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	if deadline <= 0 {
		deadline = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	wait := 250 * time.Millisecond
	for {
		b, final, err := getUserData(ctx, client, url)
		if err == nil || final {
			return b, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("metadata service %s: gave up after %s: %w", url, deadline, err)
		case <-time.After(wait):
		}
		wait = min(wait*2, 4*time.Second)
	}
}

func getUserData(ctx context.Context, client *http.Client, url string) (body []byte, final bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, true, fmt.Errorf("metadata service: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, false, fmt.Errorf("metadata service: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxUserData+1))
	switch {
	case err != nil:
		return nil, false, fmt.Errorf("metadata service: read: %w", err)
	case resp.StatusCode == http.StatusNotFound || (resp.StatusCode == http.StatusOK && len(b) == 0):
		return nil, true, fmt.Errorf("metadata service %s: this server has no user-data: %w", url, ErrNoConfig)
	case resp.StatusCode != http.StatusOK:
		return nil, resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests,
			fmt.Errorf("metadata service %s: HTTP %d", url, resp.StatusCode)
	}
	return b, false, nil
}
