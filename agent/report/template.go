package report

// The functions a webhook body template may use.

import (
	"encoding/json"
	"strings"
	"text/template"
)

// TemplateFuncs are the functions a webhook template may call besides Go's built-ins.
func TemplateFuncs() template.FuncMap {
	return template.FuncMap{
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"upper": strings.ToUpper,
		"lower": strings.ToLower,
	}
}

// ParseTemplate parses a webhook body template with TemplateFuncs.
func ParseTemplate(name, text string) (*template.Template, error) {
	return template.New(name).Funcs(TemplateFuncs()).Option("missingkey=error").Parse(text)
}
