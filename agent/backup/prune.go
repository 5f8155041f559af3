package backup

// The repository's retention: which copies are kept, and the space of the others given back.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Keep is how many copies of each kind the retention keeps: the newest of each of the last Daily days, Weekly weeks
// and Monthly months (restic's --keep-daily, --keep-weekly, --keep-monthly; a copy may count for more than one).
type Keep struct {
	Daily, Weekly, Monthly int
}

// PruneResult is what Prune did.
type PruneResult struct {
	Before, After int // the cluster's snapshots
	Took          time.Duration
}

// lockRetry is how often, and how far apart, Prune tries again while another command holds the repository (restic
// 0.14, Debian 12's, has no --retry-lock).
var lockRetry = struct {
	tries int
	every time.Duration
}{60, 30 * time.Second}

// Prune forgets the snapshots carrying tag that keep does not keep, per kind (restic's --group-by tags: the Volume's,
// the configuration's and the database's copies each on their own, whichever node took them), and prunes the data
// that only they used. Pruning needs the repository to itself: while a copy runs, it waits and tries again (up to
// 30 minutes).
func Prune(ctx context.Context, repo Repo, keep Keep, tag string) (PruneResult, error) {
	var res PruneResult
	if keep.Daily < 1 {
		return res, fmt.Errorf("prune: keep at least one daily copy (got %d)", keep.Daily)
	}
	before, err := repo.Snapshots(ctx, tag)
	if err != nil {
		return res, err
	}
	res.Before = len(before)
	args := []string{"forget", "--tag", tag, "--group-by", "tags", "--keep-daily", strconv.Itoa(keep.Daily),
		"--keep-weekly", strconv.Itoa(keep.Weekly), "--keep-monthly", strconv.Itoa(keep.Monthly), "--prune"}
	t0 := time.Now()
	for try := 1; ; try++ {
		_, err = repo.run(ctx, nil, args...)
		if err == nil || !strings.Contains(err.Error(), "locked") || try >= lockRetry.tries {
			break
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(lockRetry.every):
		}
	}
	res.Took = time.Since(t0)
	if err != nil {
		return res, fmt.Errorf("prune: %w", err)
	}
	after, err := repo.Snapshots(ctx, tag)
	if err != nil {
		return res, err
	}
	res.After = len(after)
	return res, nil
}
