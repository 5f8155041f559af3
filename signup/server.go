package signup

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// MaxBody bounds every request body.
const MaxBody = 16 << 10

// Server is the portal's HTTP handler.
type Server struct {
	cfg      Config
	mc       *Mailcow
	captcha  *Captcha
	msgs     *Messages
	tmpl     *template.Template
	log      *slog.Logger
	trusted  []netip.Prefix
	reserved []string

	mu        sync.Mutex
	create    map[string]*rate.Limiter // per address and per network
	checks    map[string]*rate.Limiter
	swept     time.Time
	all       *rate.Limiter // the cap on all sign-ups together
	capLogged time.Time
	policy    Policy
	policyT   time.Time
}

// NewServer builds the handler. captchaKey signs the challenges; mc talks to mailcow.
func NewServer(cfg Config, mc *Mailcow, captchaKey []byte, log *slog.Logger) (*Server, error) {
	msgs, err := LoadMessages(cfg.Language)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, mc: mc, msgs: msgs, log: log, create: map[string]*rate.Limiter{}, checks: map[string]*rate.Limiter{},
		captcha: &Captcha{Key: captchaKey, MaxNumber: cfg.Difficulty, TTL: time.Duration(cfg.CaptchaTTL), Used: NewFileUsed(cfg.CaptchaUsedFile)}}
	mc.OnUnauthorized = func() {
		log.Error("signup: mailcow refused the API key; the portal makes no further API calls until it is restarted",
			"event", "signup_api_unauthorized", "severity", "critical")
	}
	s.reserved = cfg.Reserved
	if len(s.reserved) == 0 {
		s.reserved = DefaultReserved()
	}
	for _, p := range cfg.TrustedProxies {
		pf, err := netip.ParsePrefix(p)
		if err != nil {
			return nil, err
		}
		s.trusted = append(s.trusted, pf)
	}
	s.tmpl, err = template.New("").Funcs(template.FuncMap{
		"join": strings.Join,
	}).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Handler returns the portal below cfg.BasePath, with the security headers and cross-origin protection.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	base := strings.TrimSuffix(s.cfg.BasePath, "/")
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET "+base+"/static/", http.StripPrefix(base+"/static/", cacheStatic(http.FileServerFS(static))))
	mux.HandleFunc("GET "+base+"/{$}", s.page)
	mux.HandleFunc("POST "+base+"/{$}", s.submit)
	mux.HandleFunc("GET "+base+"/challenge", s.challenge)
	mux.HandleFunc("GET "+base+"/check", s.check)
	mux.HandleFunc("GET "+base+"/password", s.newPassword)
	mux.HandleFunc("GET "+base+"/lang", s.setLang)
	if base != "" {
		mux.Handle("GET "+base, http.RedirectHandler(base+"/", http.StatusMovedPermanently))
	}
	cop := http.NewCrossOriginProtection()
	return securityHeaders(cop.Handler(http.MaxBytesHandler(mux, MaxBody)))
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; worker-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

func cacheStatic(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		next.ServeHTTP(w, r)
	})
}

// form is what the user sent, kept for a failed submit.
type form struct {
	Name, User, Password, Password2 string
	Own, Saved                      bool
}

// pageData is what the templates see.
type pageData struct {
	Lang      string
	Langs     []langOption
	Base      string
	Domain    string
	Form      form
	Errors    map[string]string // field → message
	Alert     string
	Address   string
	Hostname  string
	OnHold    bool
	MinLength int
	t         func(string) string
}

type langOption struct {
	Tag, Name string
	Selected  bool
}

// T translates a key.
func (d pageData) T(key string) string { return d.t(key) }

// Sub replaces {{.Domain}} and {{.Address}} in a translated text.
func (d pageData) Sub(key string) string {
	return strings.NewReplacer("{{.Domain}}", d.Domain, "{{.Address}}", d.Address).Replace(d.t(key))
}

func (s *Server) data(r *http.Request) pageData {
	lang := s.msgs.Pick(r)
	d := pageData{Lang: lang.String(), Base: strings.TrimSuffix(s.cfg.BasePath, "/"), Domain: s.cfg.Domain,
		Hostname: s.cfg.Hostname, OnHold: s.cfg.OnHold, MinLength: MinLength, Errors: map[string]string{},
		t: func(k string) string { return s.msgs.T(lang, k) }}
	for _, t := range s.msgs.Tags() {
		d.Langs = append(d.Langs, langOption{Tag: t.String(), Name: s.msgs.T(t, "lang_name"), Selected: t == lang})
	}
	return d
}

func (s *Server) render(w http.ResponseWriter, name string, code int, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if err := s.tmpl.ExecuteTemplate(w, name, d); err != nil {
		s.log.Error("signup: template", "template", name, "err", err)
	}
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	d := s.data(r)
	pw, err := Generate(s.currentPolicy(r.Context()))
	if err != nil {
		s.log.Error("signup: password generator", "err", err)
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	d.Form.Password = pw
	s.render(w, "index.html", http.StatusOK, d)
}

// currentPolicy is mailcow's password policy, read at most every 10 minutes, raised to our floor.
func (s *Server) currentPolicy(ctx context.Context) Policy {
	s.mu.Lock()
	p, at := s.policy, s.policyT
	s.mu.Unlock()
	if time.Since(at) < 10*time.Minute {
		return p.Floor()
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if got, err := s.mc.PasswordPolicy(ctx); err == nil {
		p = got
	} else {
		s.log.Warn("signup: mailcow's password policy unavailable; using the floor", "err", err)
	}
	p.Chars, p.LowerUpper, p.Numbers, p.SpecialChar = true, true, true, true
	s.mu.Lock()
	s.policy, s.policyT = p, time.Now()
	s.mu.Unlock()
	return p.Floor()
}

// clientIP is the source address: the peer's, or X-Real-IP when the peer is a trusted proxy (mailcow's nginx).
func (s *Server) clientIP(r *http.Request) netip.Addr {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	ip = ip.Unmap()
	for _, p := range s.trusted {
		if p.Contains(ip) {
			if x, err := netip.ParseAddr(strings.TrimSpace(r.Header.Get("X-Real-IP"))); err == nil {
				return x.Unmap()
			}
		}
	}
	return ip
}

// network is the source's prefix: /64 or /24 (one household, one host's neighbours), /48 or /16 (one site, one
// provider's block).
func network(ip netip.Addr, v6, v4 int) string {
	bits := v6
	if ip.Is4() {
		bits = v4
	}
	p, _ := ip.Prefix(bits)
	return p.String()
}

// allowAll takes a token from the cap on all sign-ups together (after the per-source limits passed, so that one
// source cannot use up the cap for everybody). When the cap is hit the operator hears of it, once in 10 minutes:
// many sources at once are an attack or a success, and either wants a look.
func (s *Server) allowAll() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.all == nil {
		s.all = rate.NewLimiter(rate.Limit(s.cfg.PerHour/3600), max(1, int(s.cfg.PerHour)))
	}
	if s.all.Allow() {
		return true
	}
	if time.Since(s.capLogged) > 10*time.Minute {
		s.capLogged = time.Now()
		s.log.Error("signup: the cap on sign-ups is reached; refusing new mailboxes until it refills",
			"event", "signup_cap_reached", "per_hour", s.cfg.PerHour)
	}
	return false
}

// allow takes one token from each limiter the keys name, creating it at perHour with that burst.
func (s *Server) allow(m map[string]*rate.Limiter, keys map[string]float64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.swept) > 10*time.Minute {
		for k, l := range m {
			if l.Tokens() >= float64(l.Burst()) {
				delete(m, k)
			}
		}
		s.swept = time.Now()
	}
	ok := true
	for k, perHour := range keys {
		l := m[k]
		if l == nil {
			l = rate.NewLimiter(rate.Limit(perHour/3600), max(1, int(perHour)))
			m[k] = l
		}
		ok = l.Allow() && ok
	}
	return ok
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) challenge(w http.ResponseWriter, r *http.Request) {
	ip := s.clientIP(r)
	if !s.allow(s.checks, map[string]float64{"c/" + ip.String(): 120}) {
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "rate"})
		return
	}
	ch, err := s.captcha.New()
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, ch)
}

func (s *Server) newPassword(w http.ResponseWriter, r *http.Request) {
	pw, err := Generate(s.currentPolicy(r.Context()))
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"password": pw})
}

// check answers the live availability check. It reveals which names exist, so it is rate limited per address.
func (s *Server) check(w http.ResponseWriter, r *http.Request) {
	d := s.data(r)
	ip := s.clientIP(r)
	if !s.allow(s.checks, map[string]float64{"k/" + ip.String(): 60, "k/" + network(ip, 64, 24): 240}) {
		writeJSON(w, http.StatusTooManyRequests, map[string]any{"ok": false, "message": d.T("err_rate")})
		return
	}
	u := NormalizeUser(r.URL.Query().Get("user"))
	if key := ValidateUser(u, s.reserved); key != "" {
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "key": key, "message": d.T(key)})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	exists, err := s.mc.MailboxExists(ctx, u+"@"+s.cfg.Domain)
	if err != nil {
		s.log.Warn("signup: availability check failed", "err", err)
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "key": "err_generic", "message": d.T("err_generic")})
		return
	}
	if exists {
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "key": "user_taken", "message": d.T("user_taken")})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "key": "user_available", "message": d.T("user_available")})
}

func (s *Server) setLang(w http.ResponseWriter, r *http.Request) {
	t, err := ParseLang(r.URL.Query().Get("l"))
	base := strings.TrimSuffix(s.cfg.BasePath, "/") + "/"
	if err == nil {
		http.SetCookie(w, &http.Cookie{Name: "lang", Value: t.String(), Path: base, MaxAge: 365 * 24 * 3600,
			HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"})
	}
	http.Redirect(w, r, base, http.StatusSeeOther)
}

// submit creates the mailbox.
func (s *Server) submit(w http.ResponseWriter, r *http.Request) {
	d := s.data(r)
	ip := s.clientIP(r)
	if err := r.ParseForm(); err != nil {
		d.Alert = d.T("err_generic")
		s.render(w, "index.html", http.StatusRequestEntityTooLarge, d)
		return
	}
	f := form{Name: strings.TrimSpace(r.PostFormValue("name")), User: NormalizeUser(r.PostFormValue("user")),
		Password: r.PostFormValue("password"), Password2: r.PostFormValue("password2"),
		Own: r.PostFormValue("own") == "1", Saved: r.PostFormValue("saved") == "1"}
	d.Form = f
	audit := func(result string, attrs ...any) {
		s.log.Info("signup: "+result, append([]any{"event", "signup", "user", f.User, "domain", s.cfg.Domain,
			"source", ip.String(), "result", result}, attrs...)...)
	}
	if utf8.RuneCountInString(f.Name) > 64 || strings.ContainsAny(f.Name, "\r\n\t<>") {
		d.Errors["name"] = d.T("name_length")
	}
	if key := ValidateUser(f.User, s.reserved); key != "" {
		d.Errors["user"] = d.T(key)
	}
	policy := s.currentPolicy(r.Context())
	if bad := Check(f.Password, policy); len(bad) > 0 {
		d.Errors["password"] = d.T(bad[0])
	} else if f.Own && f.Password != f.Password2 {
		d.Errors["password2"] = d.T("pw_mismatch")
	}
	if !f.Own && !f.Saved {
		d.Errors["saved"] = d.T("pw_not_saved")
	}
	if len(d.Errors) > 0 {
		d.Alert = d.T("err_form")
		audit("refused", "reason", "form")
		s.render(w, "index.html", http.StatusUnprocessableEntity, d)
		return
	}
	if err := s.captcha.Verify(r.PostFormValue("altcha")); err != nil {
		if errors.Is(err, ErrCaptchaStore) {
			// Not the visitor's fault: without the store no challenge can be accepted only once. Refuse, and say so.
			s.log.Error("signup: the captcha's used-challenges store failed; refusing sign-ups until it works", "err", err)
		}
		d.Errors["captcha"] = d.T("captcha_invalid")
		d.Alert = d.T("captcha_invalid")
		audit("refused", "reason", err.Error())
		s.render(w, "index.html", http.StatusUnprocessableEntity, d)
		return
	}
	if !s.allow(s.create, map[string]float64{"ip/" + ip.String(): s.cfg.PerIP, "net/" + network(ip, 64, 24): s.cfg.PerNet,
		"wide/" + network(ip, 48, 16): s.cfg.PerWide}) || !s.allowAll() {
		d.Alert = d.T("err_rate")
		audit("refused", "reason", "rate limit")
		s.render(w, "index.html", http.StatusTooManyRequests, d)
		return
	}
	active := "1"
	if s.cfg.OnHold {
		active = "2"
	}
	addr := f.User + "@" + s.cfg.Domain
	name := f.Name
	if name == "" {
		name = f.User
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	err := s.mc.AddMailbox(ctx, NewMailbox{LocalPart: f.User, Domain: s.cfg.Domain, Name: name, Password: f.Password,
		Password2: f.Password, Quota: strconv.Itoa(s.cfg.QuotaMiB), Active: active, Tags: []string{"selfservice"},
		ForcePWUpdate: "0", TLSEnforceIn: "0", TLSEnforceOut: "0"})
	var danger *DangerError
	switch {
	case errors.As(err, &danger) && (danger.Key() == "object_exists" || danger.Key() == "is_alias_or_mailbox" || danger.Key() == "is_alias"):
		d.Errors["user"] = d.T("user_taken")
		d.Alert = d.T("err_form")
		audit("refused", "reason", danger.Key())
		s.render(w, "index.html", http.StatusConflict, d)
		return
	case errors.As(err, &danger) && strings.HasPrefix(danger.Key(), "password"):
		d.Errors["password"] = d.T("pw_too_short")
		d.Alert = d.T("err_form")
		audit("refused", "reason", danger.Key())
		s.render(w, "index.html", http.StatusUnprocessableEntity, d)
		return
	case err != nil:
		d.Alert = d.T("err_generic")
		audit("failed", "err", err.Error())
		s.render(w, "index.html", http.StatusServiceUnavailable, d)
		return
	}
	if s.cfg.SendLimit > 0 {
		if err := s.mc.SetRateLimit(ctx, addr, s.cfg.SendLimit, s.cfg.SendFrame); err != nil {
			s.log.Warn("signup: could not set the sending rate limit", "user", f.User, "err", err)
		}
	}
	audit("created")
	d.Address = addr
	s.render(w, "done.html", http.StatusOK, d)
}
