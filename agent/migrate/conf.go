package migrate

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/mailcow-ha/mailcow-ha/agent/mailcowconf"
)

// Choices are the old server's mailcow.conf choices, as the cluster configuration's keys: Settings for
// [mailcow.conf] (each variable it sets to other than mailcow's default and that the cluster does not own),
// Hostname and Timezone for mailcow.hostname and mailcow.timezone, and Left, one line per variable not carried and
// why (the cluster owns it, or release 2026-07a has no such variable).
type Choices struct {
	Settings map[string]string
	Hostname string
	Timezone string
	Left     []string
}

// ConfChoices reads the choices out of the old server's mailcow.conf.
func ConfChoices(conf map[string]string) Choices {
	c := Choices{Settings: map[string]string{}, Hostname: conf["MAILCOW_HOSTNAME"], Timezone: conf["TZ"]}
	for _, k := range slices.Sorted(maps.Keys(conf)) {
		v, known := mailcowconf.Lookup(k)
		switch {
		case !known:
			c.Left = append(c.Left, fmt.Sprintf("%s: not a variable of mailcow.conf (release 2026-07a)", k))
		case k == "MAILCOW_HOSTNAME" || k == "TZ":
		case v.Owner != "":
			c.Left = append(c.Left, fmt.Sprintf("%s: set by mailcow-ha (%s)", k, v.Owner))
		case conf[k] == v.Default:
		default:
			c.Settings[k] = conf[k]
		}
	}
	for _, p := range mailcowconf.CheckSettings(c.Settings) {
		k := strings.TrimPrefix(strings.SplitN(p, ":", 2)[0], "mailcow.conf.")
		delete(c.Settings, k)
		c.Left = append(c.Left, strings.TrimPrefix(p, "mailcow.conf."))
	}
	slices.Sort(c.Left)
	return c
}

// TOML is the choices as the cluster configuration's keys, for `config apply` (merged into the document in force).
func (c Choices) TOML() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# mailcow.conf's choices on the old server, as the cluster configuration's keys\n[mailcow]\nhostname = %s\n", strconv.Quote(c.Hostname))
	if c.Timezone != "" {
		fmt.Fprintf(&b, "timezone = %s\n", strconv.Quote(c.Timezone))
	}
	b.WriteString("\n[mailcow.conf]\n")
	for _, k := range slices.Sorted(maps.Keys(c.Settings)) {
		fmt.Fprintf(&b, "%s = %s\n", k, strconv.Quote(c.Settings[k]))
	}
	for _, l := range c.Left {
		fmt.Fprintf(&b, "# not carried: %s\n", l)
	}
	return b.String()
}
