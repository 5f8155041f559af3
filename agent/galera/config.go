// Package galera runs the node's MariaDB Galera member: it renders the my.cnf drop-in, starts and stops mariadbd
// (bootstrap, join, recovery with a start position), reads grastate.dat and --wsrep-recover's position, queries
// the wsrep status over the unix socket, and decides, without I/O, when a node may bootstrap.
package galera

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Provider is Debian's galera-4 library.
const Provider = "/usr/lib/galera/libgalera_smm.so"

// Spec is what the drop-in is rendered from.
type Spec struct {
	ClusterName string
	NodeName    string
	NodeIP      string   // this node's private IP: wsrep_node_address and bind-address
	Members     []string // every member's and arbitrator's private IP, this node's included
	DataDir     string
	Socket      string
	PidFile     string
	ErrorLog    string
	Port        int // SQL port on the private IP; default 3306
	GroupPort   int // 4567
	ISTPort     int // 4568
	SSTPort     int // 4444
	SSTMethod   string
	User        string // the user mariadbd runs as: mysql on a node
	// TLS, when set, encrypts and authenticates the replication (gcomm), the incremental transfers (IST) and the
	// state transfers (SST: rsync through stunnel, mariabackup through socat), with certificates of the cluster's CA.
	TLS *TLSFiles
}

// Render returns the my.cnf drop-in: mailcow's server settings and the wsrep settings. It refuses values that
// could break a line of the file.
func Render(s Spec) ([]byte, error) {
	var errs []string
	plain := func(key, v string) string {
		if v == "" || strings.ContainsAny(v, "\n\r\"'#;=") || strings.TrimSpace(v) != v {
			errs = append(errs, fmt.Sprintf("%s: %q is not a plain value", key, v))
		}
		return v
	}
	ip := func(key, v string) string {
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			errs = append(errs, fmt.Sprintf("%s: %q is not an IP address", key, v))
			return "invalid"
		}
		return a.String()
	}
	hostPort := func(addr string, port int) string { return net.JoinHostPort(addr, strconv.Itoa(port)) }
	if s.Port == 0 {
		s.Port = 3306
	}
	if s.User == "" {
		s.User = "mysql"
	}
	if s.SSTMethod != "rsync" && s.SSTMethod != "mariabackup" {
		errs = append(errs, fmt.Sprintf("sst method %q: rsync or mariabackup", s.SSTMethod))
	}
	self := ip("node address", s.NodeIP)
	var members []string
	for i, m := range s.Members {
		members = append(members, hostPort(ip(fmt.Sprintf("member %d", i), m), s.GroupPort))
	}
	if len(members) == 0 {
		errs = append(errs, "no members")
	}
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Rendered by mailcow-ha from its configuration; changes here are overwritten.")
	w("[mysqld]")
	w("user = %s", plain("user", s.User))
	w("datadir = %s", plain("datadir", s.DataDir))
	w("socket = %s", plain("socket", s.Socket))
	w("pid-file = %s", plain("pid-file", s.PidFile))
	if s.ErrorLog != "" { // none: mariadbd logs to stderr, which systemd puts into the journal
		w("log-error = %s", plain("log-error", s.ErrorLog))
	}
	w("bind-address = %s", self)
	w("port = %d", s.Port)
	w("")
	w("# mailcow's server settings")
	w("character-set-server = utf8mb4")
	w("collation-server = utf8mb4_general_ci")
	w("max_allowed_packet = 192M")
	w("max-connections = 550")
	w("event_scheduler = 1")
	w("innodb-strict-mode = 0")
	w("skip-name-resolve")
	w("")
	w("# Galera")
	w("binlog_format = ROW")
	w("default_storage_engine = InnoDB")
	w("innodb_autoinc_lock_mode = 2")
	w("wsrep_on = ON")
	w("wsrep_provider = %s", Provider)
	w("wsrep_cluster_name = %s", plain("cluster name", s.ClusterName))
	w("wsrep_node_name = %s", plain("node name", s.NodeName))
	w("wsrep_cluster_address = gcomm://%s", strings.Join(members, ","))
	w("wsrep_node_address = %s", hostPort(self, s.GroupPort))
	opts := fmt.Sprintf("gmcast.listen_addr=tcp://%s;ist.recv_addr=%s;pc.recovery=true", hostPort(self, s.GroupPort), hostPort(self, s.ISTPort))
	if s.TLS != nil {
		opts += ProviderTLS(*s.TLS)
	}
	w("wsrep_provider_options = \"%s\"", opts)
	w("wsrep_sst_method = %s", s.SSTMethod)
	w("wsrep_sst_receive_address = %s", hostPort(self, s.SSTPort))
	if s.TLS != nil {
		// The state transfer script reads its TLS settings from [sst]; VERIFY_CA: the other side must show a
		// certificate of the cluster's CA. With the files set, a transfer never falls back to plain text: it fails.
		w("")
		w("[sst]")
		w("tkey = %s", plain("tls key", s.TLS.Key))
		w("tcert = %s", plain("tls certificate", s.TLS.Cert))
		w("tca = %s", plain("tls ca", s.TLS.CA))
		w("ssl-mode = VERIFY_CA")
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("galera config: %s", strings.Join(errs, "; "))
	}
	return b.Bytes(), nil
}

// ProviderTLS is the provider options' part that turns on TLS for gcomm and IST, for a member and for garbd.
func ProviderTLS(f TLSFiles) string {
	return fmt.Sprintf(";socket.ssl_key=%s;socket.ssl_cert=%s;socket.ssl_ca=%s", f.Key, f.Cert, f.CA)
}
