package signup

import (
	"slices"
	"strings"
)

// DefaultReserved are the local parts nobody may register: the RFC 2142 role addresses and the names that
// mail systems and people take for official ones.
func DefaultReserved() []string {
	return []string{
		// RFC 2142
		"info", "marketing", "sales", "support", "abuse", "noc", "security", "postmaster", "hostmaster", "usenet",
		"news", "webmaster", "www", "uucp", "ftp",
		// systems and official-looking names
		"root", "admin", "administrator", "mailer-daemon", "mailerdaemon", "daemon", "nobody", "noreply", "no-reply",
		"donotreply", "do-not-reply", "bounce", "bounces", "system", "sysadmin", "operator", "hostmaster", "ssladmin",
		"sslwebmaster", "ssl-admin", "webadmin", "it", "help", "helpdesk", "billing", "privacy", "legal", "dmarc",
		"dkim", "mail", "email", "smtp", "imap", "pop", "pop3", "autoconfig", "autodiscover", "mta-sts", "list",
		"lists", "listmaster", "owner", "owner-", "majordomo", "test", "vmail", "spam", "ham", "quarantine",
	}
}

// Usernames are lower-cased; letters, digits and one separator (. - _) between them.
const (
	UserMin = 3
	UserMax = 32
)

// NormalizeUser lower-cases and trims a local part.
func NormalizeUser(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// ValidateUser returns the message key of the first rule the (normalized) local part breaks, or "".
func ValidateUser(u string, reserved []string) string {
	if len(u) < UserMin || len(u) > UserMax {
		return "user_length"
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '.' || c == '-' || c == '_':
			if i == 0 || i == len(u)-1 {
				return "user_edge"
			}
			if p := u[i-1]; p == '.' || p == '-' || p == '_' {
				return "user_double"
			}
		default:
			return "user_chars"
		}
	}
	if slices.Contains(reserved, u) {
		return "user_reserved"
	}
	for _, r := range reserved {
		if strings.HasSuffix(r, "-") && strings.HasPrefix(u, r) {
			return "user_reserved"
		}
	}
	return ""
}
