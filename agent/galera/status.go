package galera

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// Status is the local node's wsrep status.
type Status struct {
	ClusterStatus string // Primary, non-Primary, Disconnected
	LocalState    string // Synced, Donor/Desynced, Joining, Joined...
	Ready         bool
	Connected     bool
	ClusterSize   int
	LastCommitted int64
	StateUUID     string // wsrep_cluster_state_uuid: the cluster's history
}

// Serving is the quorum rule's question: in the Primary component with all committed data, which a donor
// (Donor/Desynced) also has. Without the donor case, a MASTER chosen as donor for a node that rejoins would fail
// its check and hand MASTER over (seen in the lab after every power-on of an old master).
func (s Status) Serving() bool {
	return s.ClusterStatus == "Primary" && (s.LocalState == "Synced" || s.LocalState == DonorState) && s.Ready && s.Connected
}

// PrimarySynced is Primary and Synced: the state a joining member waits for.
func (s Status) PrimarySynced() bool {
	return s.ClusterStatus == "Primary" && s.LocalState == "Synced" && s.Ready && s.Connected
}

// Detail is a short summary for reports.
func (s Status) Detail() string {
	return fmt.Sprintf("%s %s size=%d seqno=%d", s.ClusterStatus, s.LocalState, s.ClusterSize, s.LastCommitted)
}

// Open returns a handle on the local server through its unix socket, as root (unix_socket authentication).
func Open(socket string) (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.User = "root"
	cfg.Net = "unix"
	cfg.Addr = socket
	cfg.Timeout = 2e9
	cfg.ReadTimeout = 5e9
	cfg.WriteTimeout = 5e9
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("galera: %w", err)
	}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(2)
	return db, nil
}

// Query reads the wsrep status.
func Query(ctx context.Context, db *sql.DB) (Status, error) {
	rows, err := db.QueryContext(ctx, "SHOW GLOBAL STATUS WHERE Variable_name IN "+
		"('wsrep_cluster_status','wsrep_local_state_comment','wsrep_ready','wsrep_connected',"+
		"'wsrep_cluster_size','wsrep_last_committed','wsrep_cluster_state_uuid')")
	if err != nil {
		return Status{}, fmt.Errorf("galera status: %w", err)
	}
	defer rows.Close()
	var s Status
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return Status{}, fmt.Errorf("galera status: %w", err)
		}
		switch strings.ToLower(k) {
		case "wsrep_cluster_status":
			s.ClusterStatus = v
		case "wsrep_local_state_comment":
			s.LocalState = v
		case "wsrep_ready":
			s.Ready = v == "ON"
		case "wsrep_connected":
			s.Connected = v == "ON"
		case "wsrep_cluster_size":
			s.ClusterSize, _ = strconv.Atoi(v)
		case "wsrep_last_committed":
			s.LastCommitted, _ = strconv.ParseInt(v, 10, 64)
		case "wsrep_cluster_state_uuid":
			s.StateUUID = v
		}
	}
	if err := rows.Err(); err != nil {
		return Status{}, fmt.Errorf("galera status: %w", err)
	}
	return s, nil
}
