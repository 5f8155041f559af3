package stack

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// PortsFrom returns the ports to probe per critical service: mailcow's defaults, moved where mailcow.conf sets
// SMTP_PORT, HTTPS_PORT and the like (a value such as "127.0.0.1:143" moves the port to 143). A missing
// mailcow.conf leaves the defaults.
func PortsFrom(mailcowConf string) (map[string][]int, error) {
	b, err := os.ReadFile(mailcowConf)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("mailcow.conf: %w", err)
	}
	return PortsIn(b)
}

// PortsIn is PortsFrom for mailcow.conf's content.
func PortsIn(conf []byte) (map[string][]int, error) {
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(conf))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			vars[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mailcow.conf: %w", err)
	}
	out := map[string][]int{}
	for svc, ports := range ServicePorts {
		for _, p := range ports {
			n := p.Port
			if v, ok := vars[p.Var]; ok && v != "" {
				if i := strings.LastIndexByte(v, ':'); i >= 0 {
					v = v[i+1:]
				}
				var err error
				if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 65535 {
					return nil, fmt.Errorf("mailcow.conf: %s=%q is not a port", p.Var, vars[p.Var])
				}
			}
			out[svc] = append(out[svc], n)
		}
	}
	return out, nil
}
