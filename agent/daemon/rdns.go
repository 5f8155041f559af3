package daemon

import (
	"context"
	"time"
)

// rdns is what the Floating IP's reverse DNS needs of the Hetzner API (agent/hcloud.Client has it).
type rdns interface {
	FloatingIPPTR(ctx context.Context, id int64) (string, error)
	SetFloatingIPPTR(ctx context.Context, id int64, ptr string) error
}

// ensureRDNS makes the Floating IP's reverse DNS name mailcow.hostname, so that mail the MASTER sends from the
// Floating IP (SNAT_TO_SOURCE) passes the receivers' reverse DNS checks. It runs after each promotion, off the
// takeover's path (one read, and a change only when the name differs); a failure is a warning, and the next
// promotion tries again.
func (a *Agent) ensureRDNS() {
	host := a.c.Mailcow.Hostname
	api, ok := a.o.Cloud.(rdns)
	if host == "" || !ok {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		id := a.c.Hcloud.FloatingIPID
		ptr, err := api.FloatingIPPTR(ctx, id)
		if err == nil && ptr == host {
			return
		}
		if err == nil {
			err = api.SetFloatingIPPTR(ctx, id, host)
		}
		if err != nil {
			a.log.Warn("the Floating IP's reverse DNS could not be set to mailcow.hostname; mail sent from it may be refused",
				"floating_ip_id", id, "want", host, "err", err)
			return
		}
		a.log.Info("set the Floating IP's reverse DNS to mailcow.hostname", "floating_ip_id", id, "was", ptr, "now", host)
	}()
}
