#!/usr/bin/env bash
# Runs every test tier that exists. It starts dockerd when none answers and stops only what it started.
# The go test output (less the === RUN noise) is kept in build/test.log; the last line counts the tests.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
mkdir -p build
# The sweep: what labs, VM harnesses and tests whose process died left behind (namespaces with their processes,
# mounts, loop devices; recorded in /run/mailcow-ha/reap). Built once, so that it does not depend on the tests.
sweep=build/test-bin/sweep-mailcow-ha
CGO_ENABLED=0 go build -o "$sweep" ./cmd/mailcow-ha || exit 1
"$sweep" lab sweep || exit 1
bash scripts/dockerd.sh start || exit 1
trap 'bash scripts/dockerd.sh stop; "$sweep" lab sweep' EXIT

# All of make test must stay under 45 minutes on 2 idle cores (about 35 here). go test stops a package at 85
# minutes, room for the VM tier on a machine about three times slower than this one; the lab's and the VM tier's
# tests end themselves a few minutes before. -p 1: the packages that run real clusters in namespaces
# (keepalived, mariadbd, agents, QEMU) run one after another, not all at once.
go test -race -p 1 -count=1 -timeout 85m -v ./... 2>&1 | tee build/test.log | grep -vE '^\s*=== (RUN|PAUSE|CONT|NAME)'
rc=${PIPESTATUS[0]}
bash scripts/dockerd.sh stop
trap - EXIT
# Nothing of ours may be left: a test that leaked is swept here, and anything the sweep cannot remove fails the run.
if ! "$sweep" lab sweep --check --below "$top/build"; then
	echo "make test: the tests left things behind (see above)"
	rc=1
fi

passed=$(grep -cE '^\s*--- PASS' build/test.log)
failed=$(grep -cE '^\s*--- FAIL' build/test.log)
skipped=$(grep -cE '^\s*--- SKIP' build/test.log)
if ((skipped > 0)); then
	echo "skipped tests and why:"
	# go test -v prints a test's skip message just before its "--- SKIP" line.
	grep -vE '^\s*=== (RUN|PAUSE|CONT|NAME)' build/test.log | grep -B1 -E '^\s*--- SKIP' | grep -vE '^\s*--- SKIP|^--$' | sed 's/^/  /'
fi
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit "$rc"
