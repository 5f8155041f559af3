package api

// The peer API's migration route (`mailcow-ha migrate --final`): the MASTER switches mailcow to the old server's
// state staged on its Volume.

import (
	"context"
	"net/http"
)

// MigrateAnswer says what a migration's switch did: the Volume's directories now from the old server, where the
// ones they replaced are kept, the database's import time, and whether mailcow runs again; Error says why it failed.
type MigrateAnswer struct {
	From     string   `json:"from"`
	Dirs     []string `json:"dirs"`
	Replaced string   `json:"replaced"`
	ImportMS int64    `json:"import_ms"`
	Started  bool     `json:"started"`
	Error    string   `json:"error,omitempty"`
}

// MigrateAgent is what the migration route needs of an agent.
type MigrateAgent interface {
	// SwitchMigration makes the final stage on the Volume the cluster's state, in maintenance with mailcow stopped,
	// and starts mailcow on it (a settled MASTER only).
	SwitchMigration(ctx context.Context) MigrateAnswer
}

// migrateRoutes adds the migration's route to a peer API.
func migrateRoutes(mux *http.ServeMux, a MigrateAgent, auth authWrap) {
	mux.HandleFunc("POST /peer/v1/migrate/switch", auth(func(w http.ResponseWriter, r *http.Request, _ []byte, _ string) {
		writeJSON(w, http.StatusOK, a.SwitchMigration(r.Context()))
	}))
}

// SwitchMigration asks a peer (the MASTER) to switch to the staged migration.
func (c *PeerClient) SwitchMigration(ctx context.Context, to Peer) (MigrateAnswer, error) {
	var a MigrateAnswer
	err := c.do(ctx, http.MethodPost, to, "/peer/v1/migrate/switch", struct{}{}, &a)
	return a, err
}
