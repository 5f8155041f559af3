package signup

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowser drives Debian's headless Chromium through the portal: the captcha solves itself in the page's
// worker, a mailbox is created and the settings page shown; screenshots of the light, dark, French and German
// pages go to build/signup/; and a form on another origin cannot post to the portal.
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("the browser test starts Chromium; -short skips it")
	}
	chrome := findChromium()
	if chrome == "" {
		t.Skip("Chromium is not installed (Debian package chromium; make deps installs it)")
	}
	e := newEnv(t, func(c *Config) { c.Difficulty = DefaultConfig().Difficulty })
	root, _ := filepath.Abs("..")
	shots := filepath.Join(root, "build", "signup")
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := browser(chrome, 3*time.Minute)
	defer cancel()

	page := e.base + "/?lang=en"
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	start := time.Now()
	if err := chromedp.Do(ctx, chromedp.Navigate(page), chromedp.WaitVisible(css("#user"))); err != nil {
		t.Fatalf("load: %v", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("captcha-box").checked`, chromedp.WithPollingTimeout(60*time.Second))); err != nil {
		t.Fatalf("captcha: %v", err)
	}
	solve := time.Since(start)
	took, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("captcha-box").getAttribute("data-took")`))
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := strconv.Atoi(took)
	t.Logf("captcha (difficulty %d) solved by the page's worker in %d ms; page load to solved %s", e.cfg.Difficulty, ms, solve.Round(time.Millisecond))
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(css("#name"), "Browser Test"),
		chromedp.SendKeys(css("#user"), "browser.test"),
		chromedp.WaitVisible(css("#user-status.ok")),
		chromedp.Click(css("#saved")),
	); err != nil {
		t.Fatalf("fill in: %v", err)
	}
	shot := func(name string) {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		writeShot(t, filepath.Join(shots, name+".png"), png)
	}
	shot("light")
	if err := chromedp.Do(ctx, chromedp.Click(css("#submit")), chromedp.WaitVisible(css("dl.settings"))); err != nil {
		t.Fatalf("submit: %v", err)
	}
	title, _ := chromedp.Run(ctx, chromedp.Text(css("h1")))
	body, _ := chromedp.Run(ctx, chromedp.Text(css("body")))
	if title != "Your mailbox is ready" || !strings.Contains(body, "browser.test@example.org") || !strings.Contains(body, "993") {
		t.Errorf("success page: %q\n%s", title, body)
	}
	e.mc.mu.Lock()
	created := e.mc.mailboxes["browser.test@example.org"]
	e.mc.mu.Unlock()
	if !created {
		t.Error("the mailbox was not created")
	}

	// Dark mode through the toggle (remembered in mailcow_theme), then French and German.
	if err := chromedp.Do(ctx, chromedp.Navigate(page), chromedp.WaitVisible(css("#theme-toggle")), chromedp.Click(css("#theme-toggle"))); err != nil {
		t.Fatalf("dark: %v", err)
	}
	theme, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`localStorage.getItem("mailcow_theme") + "/" + document.documentElement.getAttribute("data-bs-theme")`))
	if theme != "dark/dark" {
		t.Errorf("theme after the toggle: %q", theme)
	}
	shot("dark")
	for _, lang := range []struct{ code, title string }{{"fr", "Créer votre boîte mail"}, {"de", "Postfach anlegen"}} {
		if err := chromedp.Do(ctx,
			chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
				_, err := chromedp.Evaluate[any](`localStorage.setItem("mailcow_theme", "light")`)(ctx, tg)
				return err
			}),
			chromedp.Navigate(e.base+"/lang?l="+lang.code),
			chromedp.WaitVisible(css("#user")),
		); err != nil {
			t.Fatalf("%s: %v", lang.code, err)
		}
		if title, _ := chromedp.Run(ctx, chromedp.Text(css("h1"))); title != lang.title {
			t.Errorf("%s: title %q", lang.code, title)
		}
		shot(lang.code)
	}

	// A form on another site posting to the portal is refused, and mailcow is not called.
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(e.srv.URL, "http://"))
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="http://127.0.0.1:%s/signup/">
<input name="user" value="evil"><input name="password" value="Correct-Horse-Battery-42"><input name="saved" value="1"></form>
<script>document.getElementById("f").submit()</script>`, port)
	}))
	defer evil.Close()
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1) // another site, not just another port
	e.mc.mu.Lock()
	calls := e.mc.calls
	e.mc.mu.Unlock()
	if err := chromedp.Do(ctx, chromedp.Navigate(evilURL), chromedp.Sleep(time.Second), chromedp.WaitReady(css("body"))); err != nil {
		t.Fatalf("cross-origin: %v", err)
	}
	body, _ = chromedp.Run(ctx, chromedp.Text(css("body")))
	e.mc.mu.Lock()
	defer e.mc.mu.Unlock()
	if !strings.Contains(strings.ToLower(body), "cross-origin") || e.mc.calls != calls || e.mc.mailboxes["evil@example.org"] {
		t.Errorf("cross-origin POST was not refused: %q (API calls %d → %d)", body, calls, e.mc.calls)
	}
	os.WriteFile(filepath.Join(shots, "measured.txt"), []byte(fmt.Sprintf("captcha difficulty %d: solved in %d ms by the page's worker (headless Chromium, %s)\n",
		e.cfg.Difficulty, ms, time.Now().UTC().Format(time.RFC3339))), 0o644)
}

func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browser starts headless Chromium (as root it needs --no-sandbox) and returns a tab's context.
func browser(chrome string, timeout time.Duration) (context.Context, context.CancelFunc) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox,
		chromedp.Flag("headless", "new"), chromedp.WindowSize(600, 1100), chromedp.Flag("lang", "en-US"))
	actx, cancel1 := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel2 := chromedp.NewContext(actx)
	ctx, cancel3 := context.WithTimeout(ctx, timeout)
	return ctx, func() { cancel3(); cancel2(); cancel1() }
}

// BenchmarkCaptchaBrowser is the captcha's solve time at the default difficulty in headless Chromium's page
// worker (the worker's own time, per solve).
func BenchmarkCaptchaBrowser(b *testing.B) {
	chrome := findChromium()
	if chrome == "" {
		b.Skip("Chromium is not installed (Debian package chromium)")
	}
	e := newEnv(b, func(c *Config) { c.Difficulty = DefaultConfig().Difficulty; c.PerIP = 1e6 })
	ctx, cancel := browser(chrome, 10*time.Minute)
	defer cancel()
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := chromedp.Do(ctx, chromedp.Navigate(e.base+"/?lang=en"), chromedp.WaitVisible(chromedp.CSS("#user"))); err != nil {
			b.Fatal(err)
		}
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("captcha-box").checked`, chromedp.WithPollingTimeout(60*time.Second))); err != nil {
			b.Fatal(err)
		}
		took, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("captcha-box").getAttribute("data-took")`))
		if err != nil {
			b.Fatal(err)
		}
		ms, _ := strconv.Atoi(took)
		total += time.Duration(ms) * time.Millisecond
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "solve-ms")
}

func writeShot(t *testing.T, path string, png []byte) {
	t.Helper()
	if len(png) < 1000 {
		t.Errorf("%s: empty screenshot", path)
		return
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d KiB)", path, len(png)/1024)
}
