#!/usr/bin/env bash
# start: make sure a dockerd answers on /var/run/docker.sock. If none does, start one and remember its PID in
#        build/dockerd.pid, so that stop ends only what this script started.
# stop:  end the dockerd that start started (by its PID), and nothing else.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
state="$top/build"
pidfile="$state/dockerd.pid"
sock=/var/run/docker.sock

answers() { command -v docker >/dev/null && docker -H "unix://$sock" version >/dev/null 2>&1; }

case "${1:-}" in
start)
	if answers; then
		echo "dockerd: already running"
		exit 0
	fi
	if [[ $(id -u) != 0 ]] || ! command -v dockerd >/dev/null; then
		echo "dockerd: not running and cannot be started here (needs root and docker.io); tests that need it skip and say so" >&2
		exit 0
	fi
	mkdir -p "$state"
	setsid dockerd --host "unix://$sock" --pidfile "$state/dockerd.own.pid" >"$state/dockerd.log" 2>&1 </dev/null &
	echo $! >"$pidfile"
	for _ in $(seq 1 120); do
		if answers; then
			echo "dockerd: started, pid $(cat "$pidfile")"
			exit 0
		fi
		if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then break; fi
		sleep 0.5
	done
	echo "dockerd: did not come up; last lines of $state/dockerd.log:" >&2
	tail -20 "$state/dockerd.log" >&2 || true
	exit 1
	;;
stop)
	[[ -f $pidfile ]] || exit 0
	pid=$(cat "$pidfile")
	rm -f "$pidfile"
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		for _ in $(seq 1 60); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.5
		done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
		echo "dockerd: stopped pid $pid"
	fi
	;;
*)
	echo "usage: $0 start|stop" >&2
	exit 2
	;;
esac
