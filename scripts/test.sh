#!/usr/bin/env bash
# Runs every test (make test). Go prints a failing test's messages where they happen, among the
# log lines of everything else that ran at the same time; when a test fails this script prints the
# failures again at the end, so the reason is the last thing on the screen.
set -uo pipefail
log=$(mktemp "${TMPDIR:-/tmp}/gatehouse-test.XXXXXX")
trap 'rm -f "$log"' EXIT
"${GO:-go}" test "$@" ./... 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then
	echo
	echo "=== failures (repeated from above) ==="
	grep -E '^\s*--- FAIL|^\s+[A-Za-z0-9_]+_test\.go:[0-9]+:|^panic:|^FAIL|^# |: build failed' "$log" | head -200
fi
exit "$rc"
