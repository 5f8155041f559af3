package hcloudsim

// This file answers the API's collections (GET /v1/<resources>): label selectors and the other filters, sorting,
// and pagination with meta.pagination, as hcloud-go and the hcloud CLI read them.

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// list answers a collection with filters, sorting and pagination.
func (s *Sim) list(kind string, q url.Values) (int, any, error) {
	sel, err := parseSelector(q.Get("label_selector"))
	if err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	var items []listItem
	switch kind {
	case "server":
		for _, v := range s.st.Servers {
			if keep(q, "status", v.Status) {
				items = append(items, listItem{v.ID, v.Name, v.Created, v.Labels, s.serverJSON(v)})
			}
		}
	case "floating_ip":
		for _, v := range s.st.FloatingIPs {
			items = append(items, listItem{v.ID, v.Name, v.Created, v.Labels, s.floatingIPJSON(v)})
		}
	case "volume":
		for _, v := range s.st.Volumes {
			items = append(items, listItem{v.ID, v.Name, v.Created, v.Labels, s.volumeJSON(v)})
		}
	case "image":
		for _, v := range s.st.Images {
			if keep(q, "type", v.Type) {
				items = append(items, listItem{v.ID, v.Name, v.Created, v.Labels, imageJSON(v)})
			}
		}
	case "network":
		for _, v := range s.st.Networks {
			items = append(items, listItem{v.ID, v.Name, v.Created, v.Labels, s.networkJSON(v)})
		}
	case "placement_group":
		for _, v := range s.st.PlacementGroups {
			if keep(q, "type", v.Type) {
				items = append(items, listItem{v.ID, v.Name, v.Created, v.Labels, s.placementGroupJSON(v)})
			}
		}
	case "firewall":
		for _, v := range s.st.Firewalls {
			items = append(items, listItem{v.ID, v.Name, v.Created, v.Labels, s.firewallJSON(v)})
		}
	case "ssh_key":
		for _, v := range s.st.SSHKeys {
			if keep(q, "fingerprint", v.Fingerprint) {
				items = append(items, listItem{v.ID, v.Name, v.Created, v.Labels, sshKeyJSON(v)})
			}
		}
	}
	s.mu.Unlock()
	name := q.Get("name")
	items = slices.DeleteFunc(items, func(it listItem) bool {
		return (name != "" && it.name != name) || !sel.match(it.labels)
	})
	if err := sortItems(items, q["sort"]); err != nil {
		return 0, nil, err
	}
	page, meta, err := paginate(items, q)
	if err != nil {
		return 0, nil, err
	}
	out := make([]any, len(page))
	for i, it := range page {
		out[i] = it.json
	}
	return http.StatusOK, map[string]any{kind + "s": out, "meta": meta}, nil
}

type listItem struct {
	id      int64
	name    string
	created time.Time
	labels  map[string]string
	json    any
}

// keep applies a filter that may be given several times (status=running&status=off).
func keep(q url.Values, key, val string) bool {
	want := q[key]
	return len(want) == 0 || slices.Contains(want, val)
}

func sortItems(items []listItem, sorts []string) error {
	for i := len(sorts) - 1; i >= 0; i-- {
		field, dir, _ := strings.Cut(sorts[i], ":")
		var cmp func(a, b listItem) int
		switch field {
		case "id":
			cmp = func(a, b listItem) int { return compare(a.id, b.id) }
		case "name":
			cmp = func(a, b listItem) int { return strings.Compare(a.name, b.name) }
		case "created":
			cmp = func(a, b listItem) int { return a.created.Compare(b.created) }
		default:
			return badInput("invalid sort field %q", field)
		}
		switch dir {
		case "", "asc":
		case "desc":
			asc := cmp
			cmp = func(a, b listItem) int { return -asc(a, b) }
		default:
			return badInput("invalid sort direction %q", dir)
		}
		slices.SortStableFunc(items, cmp)
	}
	return nil
}

func compare[T int64 | int](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// paginate cuts out the requested page (per_page at most 50, default 25) and builds meta.pagination.
func paginate[T any](items []T, q url.Values) ([]T, map[string]any, error) {
	page, perPage := 1, 25
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, nil, badInput("invalid page %q", v)
		}
		page = n
	}
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, nil, badInput("invalid per_page %q", v)
		}
		perPage = min(n, 50)
	}
	total := len(items)
	last := max(1, (total+perPage-1)/perPage)
	lo := min(total, (page-1)*perPage)
	hi := min(total, lo+perPage)
	p := map[string]any{"page": page, "per_page": perPage, "previous_page": nil, "next_page": nil,
		"last_page": last, "total_entries": total}
	if page > 1 {
		p["previous_page"] = page - 1
	}
	if page < last {
		p["next_page"] = page + 1
	}
	return items[lo:hi], map[string]any{"pagination": p}, nil
}
