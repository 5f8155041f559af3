// Command composemerge merges mailcow's compose file with the override, with the compose-go version this module
// pins (Compose's own loader), and prints each service's mounts, nginx-mailcow's networks and netfilter-mailcow's
// environment as JSON. agent/stack's tests run it at the version of Debian 13's Compose and compare it with the
// merge of the version the agent links.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

type mount struct {
	Type     string `json:"type"`
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"read_only"`
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: composemerge DIR BASE OVERRIDE")
		os.Exit(2)
	}
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  os.Args[1],
		ConfigFiles: []types.ConfigFile{{Filename: os.Args[2]}, {Filename: os.Args[3]}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) {
		o.SetProjectName("mailcow", true)
		o.SkipConsistencyCheck = true
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out := map[string]any{}
	mounts := map[string][]mount{}
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			mounts[name] = append(mounts[name], mount{v.Type, v.Source, v.Target, v.ReadOnly})
		}
		if name == "nginx-mailcow" {
			for n, c := range s.Networks {
				if c != nil {
					out["nginx_"+n] = c.Ipv4Address
				}
			}
		}
		if name == "netfilter-mailcow" {
			for _, k := range []string{"SNAT_TO_SOURCE", "SNAT6_TO_SOURCE"} {
				if v := s.Environment[k]; v != nil {
					out["netfilter_"+k] = *v
				}
			}
		}
	}
	out["mounts"] = mounts
	json.NewEncoder(os.Stdout).Encode(out)
}
