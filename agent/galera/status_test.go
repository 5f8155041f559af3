package galera

import "testing"

// A member that served at the last probe and is Joined now is a donor catching up; a joiner's Joined, or a
// Joined outside the Primary component, is not.
func TestCatchingUp(t *testing.T) {
	st := func(cluster, local string) Status {
		return Status{ClusterStatus: cluster, LocalState: local, Ready: true, Connected: true}
	}
	for _, c := range []struct {
		was  bool
		st   Status
		want bool
	}{
		{true, st("Primary", "Joined"), true},
		{false, st("Primary", "Joined"), false}, // a joiner: it never served
		{true, st("non-Primary", "Joined"), false},
		{true, st("Primary", "Synced"), false}, // serving: no need
		{true, st("Primary", "Joining"), false},
		{true, Status{ClusterStatus: "Primary", LocalState: "Joined"}, false}, // not connected
	} {
		if got := CatchingUp(c.was, c.st); got != c.want {
			t.Errorf("CatchingUp(%v, %s) = %v, want %v", c.was, c.st.Detail(), got, c.want)
		}
	}
	if !st("Primary", DonorState).Serving() || st("Primary", JoinedState).Serving() {
		t.Error("a donor serves, a Joined member does not")
	}
}
