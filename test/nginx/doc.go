// Package nginx tests the two snippets that the appliance puts into mailcow's nginx (the health URL for monitors,
// agent/api/nginx, and the sign-up portal, signup/nginx) inside mailcow's real server block: the pinned release's
// sites-default.conf, rendered with mailcow's own bootstrap.py, served by Debian's nginx on loopback.
package nginx
