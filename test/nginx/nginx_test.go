package nginx

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/galera"
	"github.com/mailcow-ha/mailcow-ha/mailcowtree"
)

// hostname is the name the server block answers for (mailcow.hostname).
const hostname = "mail.example.org"

// render is mailcow's nginx bootstrap run outside its container: bootstrap.py's own prepare_template_vars (from the
// environment, as in the nginx-mailcow container) and its Jinja template of the location set. Its /etc/ssl/mail
// scan for extra certificates is not needed here and is answered with none.
const render = `
import os, sys
sys.path.insert(0, sys.argv[1])
import bootstrap
from jinja2 import Environment, FileSystemLoader
listdir = os.listdir
bootstrap.os.listdir = lambda d: [] if d.startswith('/etc/ssl/mail') else listdir(d)
env = Environment(loader=FileSystemLoader(sys.argv[2]))
sys.stdout.write(env.get_template('sites-default.conf.j2').render(bootstrap.prepare_template_vars()))
`

// agentHits counts what reached the agent's public API, by path.
type agentHits struct {
	mu    sync.Mutex
	paths map[string]int
}

func (a *agentHits) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.paths[r.URL.Path]++
		a.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (a *agentHits) count(path string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.paths[path]
}

// seen is what the portal's stand-in received: the request as nginx forwarded it.
type seen struct {
	Path, Host, RealIP, Proto, XFF string
	Body                           int
}

// The snippets in mailcow's server block, behind Debian's nginx with TLS, as a monitor and a browser on the
// Internet reach them through the Floating IP: the health URL follows the agent's answer (200 on the MASTER, 503
// elsewhere), nothing else of the agent's API is reachable, and the portal gets every path below /signup/, the
// client's real address (not one the client claims), the scheme, and no body over 16 KiB.
func TestSnippetsInMailcowsServer(t *testing.T) {
	bin := "/usr/sbin/nginx"
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("needs Debian's nginx (scripts/packages.txt): %v", err)
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import jinja2").Run(); err != nil {
		t.Skipf("needs python3-jinja2 to render mailcow's nginx templates (scripts/packages.txt): %v", err)
	}
	tree, err := mailcowtree.Dir(context.Background(), "../..")
	if err != nil {
		t.Skipf("needs mailcow's release tree: %v", err)
	}
	// Not t.TempDir, whose parent is 0700: nginx's workers run as nobody and read and write below dir.
	dir, err := os.MkdirTemp("", "nginx-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	// The agent's real public handler, its role switched by the test.
	var master atomic.Bool
	status := func(context.Context) api.NodeStatus {
		s := api.NodeStatus{Node: "node1", Role: "backup", Galera: api.GaleraStatus{OK: true}}
		if master.Load() {
			s.Role = "master"
			s.Stack.Healthy, s.Volume.Mounted, s.FloatingIP.OnInterface = true, true, true
		}
		return s
	}
	hits := &agentHits{paths: map[string]int{}}
	agent := httptest.NewServer(hits.wrap(api.PublicHandler(status, http.NotFoundHandler())))
	defer agent.Close()
	var last atomic.Pointer[seen]
	portal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		last.Store(&seen{Path: r.URL.RequestURI(), Host: r.Host, RealIP: r.Header.Get("X-Real-IP"),
			Proto: r.Header.Get("X-Forwarded-Proto"), XFF: r.Header.Get("X-Forwarded-For"), Body: int(n)})
		fmt.Fprint(w, "portal")
	}))
	defer portal.Close()

	// The snippets as the image installs them (data/conf/nginx/site.*.custom), with mailcow's network address
	// (172.22.1.1) pointed at the stand-ins on loopback.
	confd := filepath.Join(dir, "conf.d")
	for _, s := range []struct{ src, name, from, to string }{
		{"../../agent/api/nginx/site.mailcow-ha.custom", "site.mailcow-ha.custom", "172.22.1.1:7480", agent.Listener.Addr().String()},
		{"../../signup/nginx/site.signup.custom", "site.signup.custom", "172.22.1.1:8740", portal.Listener.Addr().String()},
	} {
		b, err := os.ReadFile(s.src)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(s.from)) {
			t.Fatalf("%s: does not proxy to %s", s.src, s.from)
		}
		writeFile(t, filepath.Join(confd, s.name), bytes.ReplaceAll(b, []byte(s.from), []byte(s.to)))
	}

	// mailcow's location set, rendered as its container does. The upstreams it names are loopback addresses
	// that nothing answers on (nginx resolves names when it loads); its paths are the test's directory.
	cmd := exec.Command("/usr/bin/python3", "-c", render, filepath.Join(tree, "data/Dockerfiles/nginx"), filepath.Join(tree, "data/conf/nginx/templates"))
	cmd.Env = append(os.Environ(), "MAILCOW_HOSTNAME="+hostname, "PHPFPMHOST=127.0.0.1", "SOGOHOST=127.0.0.1", "RSPAMDHOST=127.0.0.1", "ENABLE_IPV6=false")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	site, err := cmd.Output()
	if err != nil {
		t.Fatalf("rendering mailcow's sites-default.conf: %v\n%s", err, stderr.Bytes())
	}
	for _, p := range [][2]string{
		{"/etc/nginx/conf.d/site.*.custom", confd + "/site.*.custom"},
		{"/var/log/nginx/", dir + "/"},
		{"root /web;", "root " + dir + "/web;"},
	} {
		if !bytes.Contains(site, []byte(p[0])) {
			t.Fatalf("mailcow's sites-default.conf has no %q any more: the test's paths need a look", p[0])
		}
		site = bytes.ReplaceAll(site, []byte(p[0]), []byte(p[1]))
	}
	writeFile(t, filepath.Join(dir, "sites-default.conf"), site)
	page, err := os.ReadFile(filepath.Join(tree, "data/web/_status.502.html"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "web", "_status.502.html"), page)

	tlsFiles, err := galera.WriteTLS(filepath.Join(dir, "tls"), []byte("nginx-test-secret-0123456789abcdef"), nil, "nginx-test", hostname, "127.0.0.1", os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	// nginx.conf.j2's http level (its two maps, which sites-default uses) and its main server block, on a
	// loopback port.
	conf := fmt.Sprintf(`daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log notice;
events { worker_connections 64; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log %[1]s/access.log;
  client_body_temp_path %[1]s/tmp/body;
  proxy_temp_path %[1]s/tmp/proxy;
  fastcgi_temp_path %[1]s/tmp/fastcgi;
  uwsgi_temp_path %[1]s/tmp/uwsgi;
  scgi_temp_path %[1]s/tmp/scgi;
  proxy_cache_path %[1]s/tmp/cache levels=1:2 keys_zone=sogo:1m inactive=24h max_size=16m;
  server_names_hash_bucket_size 128;
  map $http_x_forwarded_proto $client_req_scheme { default $scheme; https https; }
  map $server_port $sogo_auth_internal { 65510 "1"; default ""; }
  server {
    listen 127.0.0.1:%[2]d ssl;
    ssl_certificate %[3]s;
    ssl_certificate_key %[4]s;
    server_name %[5]s autodiscover.* autoconfig.* mta-sts.*;
    include %[1]s/sites-default.conf;
  }
}
`, dir, port, tlsFiles.Cert, tlsFiles.Key, hostname)
	writeFile(t, filepath.Join(dir, "nginx.conf"), []byte(conf))
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-t", "-p", dir, "-c", filepath.Join(dir, "nginx.conf")).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	ng := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	ng.Stderr = os.Stderr
	if err := ng.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = ng.Process.Signal(syscall.SIGQUIT) // graceful: the master ends its workers
		done := make(chan struct{})
		go func() { _ = ng.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = ng.Process.Kill()
			<-done
		}
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "error.log")); err == nil {
				t.Logf("nginx's error.log:\n%s", b)
			}
		}
	}()

	ca, err := os.ReadFile(tlsFiles.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	client := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: hostname},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
		},
	}
	do := func(method, path string, body []byte, header ...string) (int, http.Header, string) {
		t.Helper()
		req, err := http.NewRequest(method, "https://"+hostname+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		var resp *http.Response
		for deadline := time.Now().Add(10 * time.Second); ; { // nginx needs a moment to listen
			resp, err = client.Do(req)
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
			req, _ = http.NewRequest(method, "https://"+hostname+path, bytes.NewReader(body))
			for i := 0; i+1 < len(header); i += 2 {
				req.Header.Set(header[i], header[i+1])
			}
		}
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	probe := func(path string) (int, map[string]any, http.Header) {
		t.Helper()
		code, h, body := do("GET", path, nil)
		var doc map[string]any
		if code == 200 || code == 503 {
			if err := json.Unmarshal([]byte(body), &doc); err != nil {
				t.Fatalf("GET %s: %d %q: %v", path, code, body, err)
			}
		}
		return code, doc, h
	}

	t.Run("health URL", func(t *testing.T) {
		master.Store(false)
		if code, doc, _ := probe("/mailcow-ha/primary"); code != 503 || doc["ok"] != false || doc["role"] != "backup" {
			t.Errorf("a BACKUP's /mailcow-ha/primary: %d %v, want 503 with ok false and role backup", code, doc)
		}
		master.Store(true)
		code, doc, h := probe("/mailcow-ha/primary")
		if code != 200 || doc["ok"] != true || doc["role"] != "master" {
			t.Errorf("the MASTER's /mailcow-ha/primary: %d %v, want 200 with ok true and role master", code, doc)
		}
		if h.Get("Cache-Control") != "no-store" {
			t.Errorf("/mailcow-ha/primary: Cache-Control %q, want the agent's no-store", h.Get("Cache-Control"))
		}
		if code, doc, _ := probe("/mailcow-ha/health"); code != 200 || doc["ok"] != true {
			t.Errorf("/mailcow-ha/health: %d %v, want 200", code, doc)
		}
		if hits.count("/primary") != 2 || hits.count("/health") != 1 {
			t.Errorf("the agent saw %v, want /primary twice and /health once", hits.paths)
		}
	})

	t.Run("nothing else of the agent's API", func(t *testing.T) {
		for _, p := range []string{"/mailcow-ha/status", "/mailcow-ha/metrics", "/mailcow-ha/replica", "/mailcow-ha/primary/x", "/mailcow-ha/"} {
			if code, _, body := do("GET", p, nil); code == 200 {
				t.Errorf("GET %s: 200 %q, want an error", p, body)
			}
		}
		for _, p := range []string{"/status", "/metrics", "/replica", "/primary/x", "/"} {
			if n := hits.count(p); n != 0 {
				t.Errorf("the agent got %s %d times through nginx", p, n)
			}
		}
	})

	t.Run("the agent down", func(t *testing.T) {
		agent.Close()
		// mailcow's error_page 502 shows its "awaiting upstream" page, with the 502.
		if code, _, body := do("GET", "/mailcow-ha/primary", nil); code != 502 {
			t.Errorf("/mailcow-ha/primary with the agent down: %d %q, want 502", code, body)
		}
	})

	t.Run("portal", func(t *testing.T) {
		if code, h, _ := do("GET", "/signup", nil); code != 301 || h.Get("Location") != "/signup/" {
			t.Errorf("GET /signup: %d to %q, want 301 to /signup/", code, h.Get("Location"))
		}
		for _, p := range []string{"/signup/", "/signup/static/app.css", "/signup/check?u=a", "/signup/index.php", "/signup/api/v1/x"} {
			last.Store(nil)
			code, _, body := do("GET", p, nil, "X-Forwarded-For", "198.51.100.7", "X-Real-IP", "198.51.100.8", "X-Forwarded-Proto", "http")
			s := last.Load()
			if code != 200 || body != "portal" || s == nil {
				t.Errorf("GET %s: %d %q, want the portal's answer", p, code, body)
				continue
			}
			want := seen{Path: p, Host: hostname, RealIP: "127.0.0.1", Proto: "https", XFF: "127.0.0.1"}
			if *s != want {
				t.Errorf("GET %s: the portal got %+v, want %+v (the client's claims ignored)", p, *s, want)
			}
		}
		last.Store(nil)
		if code, _, _ := do("POST", "/signup/", bytes.Repeat([]byte("a"), 16<<10-1), "Content-Type", "application/x-www-form-urlencoded"); code != 200 || last.Load() == nil || last.Load().Body != 16<<10-1 {
			t.Errorf("POST /signup/ with 16 KiB less a byte: %d, the portal got %+v", code, last.Load())
		}
		last.Store(nil)
		if code, _, _ := do("POST", "/signup/", bytes.Repeat([]byte("a"), 16<<10+1), "Content-Type", "application/x-www-form-urlencoded"); code != 413 || last.Load() != nil {
			t.Errorf("POST /signup/ with 16 KiB and a byte: %d, the portal got %+v; want 413 and nothing", code, last.Load())
		}
	})
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// freePort is a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
