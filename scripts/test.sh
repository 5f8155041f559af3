#!/usr/bin/env bash
# Runs every test tier that exists. It starts dockerd when none answers and stops only what it started.
# The go test output (less the === RUN noise) is kept in build/test.log; the last line counts the tests.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
mkdir -p build
bash scripts/dockerd.sh start || exit 1
trap 'bash scripts/dockerd.sh stop' EXIT

# All of make test must stay under 60 minutes on 2 cores; go test stops a package at 50. -p 1: the packages that
# run real clusters in namespaces (keepalived, mariadbd, agents) run one after another, not all at once.
go test -race -p 1 -count=1 -timeout 50m -v ./... 2>&1 | tee build/test.log | grep -vE '^\s*=== (RUN|PAUSE|CONT|NAME)'
rc=${PIPESTATUS[0]}
bash scripts/dockerd.sh stop
trap - EXIT

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
