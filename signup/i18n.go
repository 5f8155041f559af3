package signup

import (
	"embed"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"sort"
	"strings"

	"golang.org/x/text/language"
)

//go:embed locales/*.json
var localeFS embed.FS

// Messages holds every language's texts; the first language is the fallback.
type Messages struct {
	tags    []language.Tag
	byTag   map[language.Tag]map[string]string
	matcher language.Matcher
}

// LoadMessages reads the embedded locales, default first.
func LoadMessages(def string) (*Messages, error) {
	ents, err := localeFS.ReadDir("locales")
	if err != nil {
		return nil, err
	}
	m := &Messages{byTag: map[language.Tag]map[string]string{}}
	for _, e := range ents {
		b, err := localeFS.ReadFile(path.Join("locales", e.Name()))
		if err != nil {
			return nil, err
		}
		var msgs map[string]string
		if err := json.Unmarshal(b, &msgs); err != nil {
			return nil, fmt.Errorf("signup: locales/%s: %w", e.Name(), err)
		}
		tag := language.Make(strings.TrimSuffix(e.Name(), ".json"))
		m.byTag[tag] = msgs
		m.tags = append(m.tags, tag)
	}
	deftag := language.Make(def)
	if _, ok := m.byTag[deftag]; !ok {
		return nil, fmt.Errorf("signup: default language %q has no locale", def)
	}
	sort.Slice(m.tags, func(i, j int) bool {
		if m.tags[i] == deftag || m.tags[j] == deftag {
			return m.tags[i] == deftag
		}
		return m.tags[i].String() < m.tags[j].String()
	})
	m.matcher = language.NewMatcher(m.tags)
	return m, nil
}

// Tags lists the languages, the default first.
func (m *Messages) Tags() []language.Tag { return m.tags }

// mailcowCodes maps mailcow's language codes that are not BCP 47 (or not what they seem) to real tags.
func mailcowCodes() map[string]string {
	return map[string]string{
		"gr-gr": "el-GR", // Greek: mailcow names it by the country
		"si-si": "sl-SI", // Slovenian, not Sinhala
		"cz-cs": "cs-CZ",
		"cs-cz": "cs-CZ",
		"ua-ua": "uk-UA", // Ukrainian
		"se-sv": "sv-SE",
		"sv-se": "sv-SE",
		"dk-da": "da-DK",
		"jp-ja": "ja-JP",
		"ko-kr": "ko-KR",
		"zh-cn": "zh-Hans-CN",
		"zh-tw": "zh-Hant-TW",
	}
}

// ParseLang reads a language code as a browser, a user or mailcow writes it.
func ParseLang(s string) (language.Tag, error) {
	s = strings.ToLower(strings.TrimSpace(strings.ReplaceAll(s, "_", "-")))
	if t, ok := mailcowCodes()[s]; ok {
		s = t
	}
	return language.Parse(s)
}

// Pick chooses the language: the cookie's (set by the language menu) or the query's, else Accept-Language, else
// the default.
func (m *Messages) Pick(r *http.Request) language.Tag {
	var prefs []language.Tag
	if q := r.URL.Query().Get("lang"); q != "" {
		if t, err := ParseLang(q); err == nil {
			prefs = append(prefs, t)
		}
	}
	if c, err := r.Cookie("lang"); err == nil {
		if t, err := ParseLang(c.Value); err == nil {
			prefs = append(prefs, t)
		}
	}
	accept, _, _ := language.ParseAcceptLanguage(r.Header.Get("Accept-Language"))
	prefs = append(prefs, accept...)
	_, i, conf := m.matcher.Match(prefs...)
	if conf == language.No {
		return m.tags[0]
	}
	return m.tags[i]
}

// T returns the text for key in lang, falling back to the default language, then to the key.
func (m *Messages) T(lang language.Tag, key string) string {
	if s, ok := m.byTag[lang][key]; ok {
		return s
	}
	if s, ok := m.byTag[m.tags[0]][key]; ok {
		return s
	}
	return key
}

// Missing lists, per language, the keys the default language has and it lacks (and the reverse).
func (m *Messages) Missing() map[string][]string {
	out := map[string][]string{}
	def := m.byTag[m.tags[0]]
	for _, t := range m.tags[1:] {
		for k := range def {
			if _, ok := m.byTag[t][k]; !ok {
				out[t.String()] = append(out[t.String()], k)
			}
		}
		for k := range m.byTag[t] {
			if _, ok := def[k]; !ok {
				out[t.String()] = append(out[t.String()], "extra:"+k)
			}
		}
	}
	return out
}
