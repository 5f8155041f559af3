package config

import (
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary payloads through the whole pipeline that a node runs on its user-data: payload
// decoding, strict decoding and validation. Its seed corpus is in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Fuzz(func(t *testing.T, data []byte) {
		toml, err := DecodePayload(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty payload error")
			}
			return
		}
		cfg, probs := Parse("fuzz", toml)
		for _, p := range probs {
			if p.Msg == "" || p.File != "fuzz" || p.Line < 0 {
				t.Fatalf("malformed problem %#v", p)
			}
		}
		if len(probs) == 0 {
			// A valid configuration is internally consistent.
			self, ok := cfg.Self()
			if !ok || self.Name != cfg.Node.Name {
				t.Fatalf("valid config without its own node: %+v", cfg.Node)
			}
			if len(cfg.Cluster.Nodes) < 3 || cfg.Failover.Breaker.Window < cfg.Failover.FenceTimeout {
				t.Fatalf("valid config breaks a rule: %+v", cfg)
			}
			if !strings.HasPrefix(cfg.Hcloud.Endpoint, "http") {
				t.Fatalf("valid config with endpoint %q", cfg.Hcloud.Endpoint)
			}
		}
	})
}
