package signup

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// themeVars reads the custom properties of the light and the dark theme from signup.css.
func themeVars(t *testing.T) map[string]map[string]string {
	b, err := staticFS.ReadFile("static/signup.css")
	if err != nil {
		t.Fatal(err)
	}
	css := string(b)
	out := map[string]map[string]string{}
	for theme, sel := range map[string]string{"light": `:root, [data-bs-theme="light"] {`, "dark": `[data-bs-theme="dark"] {`} {
		i := strings.Index(css, sel)
		if i < 0 {
			t.Fatalf("no %s block", theme)
		}
		block := css[i+len(sel):]
		block = block[:strings.Index(block, "}")]
		out[theme] = map[string]string{}
		for _, m := range regexp.MustCompile(`--([a-z-]+):\s*(#[0-9a-fA-F]{6})`).FindAllStringSubmatch(block, -1) {
			out[theme][m[1]] = m[2]
		}
	}
	return out
}

func luminance(hex string) float64 {
	var c [3]float64
	for i := range 3 {
		v, _ := strconv.ParseUint(hex[1+2*i:3+2*i], 16, 8)
		s := float64(v) / 255
		if s <= 0.04045 {
			c[i] = s / 12.92
		} else {
			c[i] = math.Pow((s+0.055)/1.055, 2.4)
		}
	}
	return 0.2126*c[0] + 0.7152*c[1] + 0.0722*c[2]
}

// Contrast is the WCAG 2.2 contrast ratio of two colours.
func contrast(a, b string) float64 {
	la, lb := luminance(a), luminance(b)
	if la < lb {
		la, lb = lb, la
	}
	return (la + 0.05) / (lb + 0.05)
}

// WCAG 2.2 AA in both themes: 4.5:1 for text, 3:1 for UI components and focus indicators.
func TestThemeContrast(t *testing.T) {
	if r := contrast("#ffffff", "#000000"); math.Abs(r-21) > 0.01 {
		t.Fatalf("formula: %v", r)
	}
	pairs := []struct {
		fg, bg string
		min    float64
	}{
		{"text", "card", 4.5}, {"text", "bg", 4.5}, {"muted", "card", 4.5}, {"muted", "bg", 4.5}, {"muted", "input", 4.5},
		{"text", "input", 4.5}, {"on-primary", "primary", 4.5}, {"primary", "card", 4.5}, {"error", "card", 4.5},
		{"success", "card", 4.5}, {"alert-text", "alert-bg", 4.5},
		{"border", "card", 3}, {"border", "input", 3}, {"focus", "card", 3}, {"primary", "bg", 3},
	}
	for theme, v := range themeVars(t) {
		for _, p := range pairs {
			fg, bg := v[p.fg], v[p.bg]
			if fg == "" || bg == "" {
				t.Errorf("%s: --%s or --%s missing", theme, p.fg, p.bg)
				continue
			}
			if r := contrast(fg, bg); r < p.min {
				t.Errorf("%s: --%s on --%s is %.2f:1, want ≥ %.1f:1", theme, p.fg, p.bg, r, p.min)
			} else {
				t.Logf("%s: --%s on --%s %.2f:1", theme, p.fg, p.bg, r)
			}
		}
	}
}
