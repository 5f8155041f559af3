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

# Two lanes, so that the machine's two cores are not left to wait on clusters. The first runs, one package after
# another (-p 1), the packages that run real daemons (keepalived, mariadbd, agents, dockerd), the lab among them, and
# then the VM tier (QEMU) alone. The second, started at once, first makes the mail servers' root file system
# (mmdebstrap), which the lab and the mailservers test in the first lane find cached (or wait for on its lock); then
# it builds the VM tier's image (mostly downloads, dpkg and mkfs; the VM tier's TestMain then finds it by its input
# hash, or waits on the build's lock, or builds it itself if this build failed), and last runs the unit-test
# packages (no cluster, no shared dockerd, each namespace its own). The builds come first so that they are done
# before the lab starts, which is after about ten minutes of Galera and agent tests: an image built beside the lab
# took 717 s instead of about 250, and that lab 1489 s instead of about 1250.
# Logs: build/test.log (every test's output, the lanes one after the other), build/test-units.log,
# build/image-prebuild.log and build/mailservers-prebuild.log.
heavy='/agent/(daemon|galera|keepalived|stack)$|/mailcowstub/deploy$|/mailservers$|/lab$'
units=$(go list ./... | grep -vE "$heavy|/test/vm\$")
clusters=$(go list ./... | grep -E "$heavy")
setsid bash -c '"$2" image mailservers --top "$3" >build/mailservers-prebuild.log 2>&1
	go test -v -count=1 -timeout 85m -run "^\$" ./test/vm >build/image-prebuild.log 2>&1
	go test -race -p 1 -count=1 -timeout 85m -v $1 >build/test-units.log 2>&1; echo $? >build/test-units.rc' \
	_ "$units" "$sweep" "$top" &
lane=$!
trap 'kill -- -$lane 2>/dev/null; bash scripts/dockerd.sh stop; "$sweep" lab sweep' EXIT

# All of make test must stay under 45 minutes on 2 idle cores. go test stops a package at 85 minutes, room for the
# VM tier on a machine about three times slower than this one; the lab's and the VM tier's tests end themselves a
# few minutes before.
go test -race -p 1 -count=1 -timeout 85m -v $clusters 2>&1 | tee build/test.log | grep -vE '^\s*=== (RUN|PAUSE|CONT|NAME)'
rc=${PIPESTATUS[0]}
wait "$lane"
echo "unit-test packages (run beside the ones above):"
grep -vE '^\s*=== (RUN|PAUSE|CONT|NAME)' build/test-units.log
cat build/test-units.log >>build/test.log
[[ $(cat build/test-units.rc 2>/dev/null) == 0 ]] || rc=1
echo "image pre-build: $(grep -E '^vm: (image|skipping)' build/image-prebuild.log | tail -1)"
echo "mail servers pre-build: $(tail -1 build/mailservers-prebuild.log 2>/dev/null)"
go test -race -count=1 -timeout 85m -v ./test/vm 2>&1 | tee -a build/test.log | grep -vE '^\s*=== (RUN|PAUSE|CONT|NAME)'
((PIPESTATUS[0] == 0)) || rc=1
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
