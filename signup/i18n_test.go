package signup

import (
	"io/fs"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/text/language"
)

// Every language has every key, and every key the templates and the script use exists.
func TestTranslationsComplete(t *testing.T) {
	m, err := LoadMessages("en")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Tags()) < 5 {
		t.Fatalf("languages: %v", m.Tags())
	}
	for lang, keys := range m.Missing() {
		t.Errorf("%s: missing or extra keys %v", lang, keys)
	}
	used := map[string]bool{}
	re := regexp.MustCompile(`\.(?:T|Sub) "([a-z0-9_]+)"`)
	_ = fs.WalkDir(templateFS, "templates", func(p string, d fs.DirEntry, err error) error {
		if d == nil || d.IsDir() {
			return nil
		}
		b, _ := templateFS.ReadFile(p)
		for _, mm := range re.FindAllStringSubmatch(string(b), -1) {
			used[mm[1]] = true
		}
		return nil
	})
	for _, k := range []string{"user_length", "user_edge", "user_double", "user_chars", "user_reserved", "user_taken",
		"user_available", "pw_too_short", "pw_too_long", "pw_control", "pw_need_letter", "pw_need_case", "pw_need_digit",
		"pw_need_special", "pw_mismatch", "pw_not_saved", "name_length", "captcha_invalid", "err_generic", "err_rate", "err_form"} {
		used[k] = true // set by the handlers
	}
	if len(used) < 40 {
		t.Fatalf("only %d keys found in the templates", len(used))
	}
	for k := range used {
		for _, tag := range m.Tags() {
			if _, ok := m.byTag[tag][k]; !ok {
				t.Errorf("%s lacks %q", tag, k)
			}
		}
	}
	// Placeholders survive translation.
	for _, tag := range m.Tags() {
		if !strings.Contains(m.T(tag, "subtitle"), "{{.Domain}}") || !strings.Contains(m.T(tag, "done_text"), "{{.Address}}") {
			t.Errorf("%s: a placeholder is missing", tag)
		}
	}
}

func TestLanguagePick(t *testing.T) {
	m, _ := LoadMessages("en")
	cases := []struct{ accept, cookie, query, want string }{
		{"fr-FR,fr;q=0.9,en;q=0.8", "", "", "fr"},
		{"de-AT", "", "", "de"},
		{"pt-BR", "", "", "en"},
		{"", "", "", "en"},
		{"fr", "it", "", "it"},
		{"fr", "it", "es", "es"},
		{"es-419", "", "", "es"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/signup/?lang="+c.query, nil)
		if c.query == "" {
			r = httptest.NewRequest("GET", "/signup/", nil)
		}
		r.Header.Set("Accept-Language", c.accept)
		if c.cookie != "" {
			r.Header.Set("Cookie", "lang="+c.cookie)
		}
		if got := m.Pick(r); got != language.Make(c.want) {
			t.Errorf("%+v: %s", c, got)
		}
	}
	for code, want := range map[string]string{"gr-gr": "el-GR", "si-si": "sl-SI", "de-de": "de-DE", "en_GB": "en-GB", "ua-ua": "uk-UA"} {
		if got, err := ParseLang(code); err != nil || got.String() != want {
			t.Errorf("%s: %v %v, want %s", code, got, err, want)
		}
	}
}
