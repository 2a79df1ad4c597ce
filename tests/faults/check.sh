#!/bin/sh
# Breaks the host on purpose with one of the patches here, runs the tests that
# guard what the patch breaks, and reports whether each failed (as it must).
# The patch is always taken back out.
#
#   tests/faults/check.sh tests/faults/skip-cursor.patch integration_crash
#
# Patches:
#   skip-cursor.patch         the cursor never moves on disk: events apply twice after a restart
#   drop-relayed-event.patch  every 25th event is never sent to JetStream, yet counts as relayed
#   flaky-calls.patch         one call in a hundred fails for no reason
#   swap-redelivers.patch     a swap makes subscribers hear the swapped component's events again
#   callee-ignores-deadline.patch  a call from another host runs to the callee's own deadline, not its caller's
#   retries-run-again.patch   a request id is never looked up: a retry under it runs again
set -eu
patch=$1
shift
cd "$(dirname "$0")/../.."
git apply "$patch"
trap 'git apply -R "$patch"' EXIT
for filter in "$@"; do
    if cargo test -p moat --test integration "$filter" >/tmp/moat-fault.log 2>&1; then
        echo "$patch: $filter PASSED: the tests did not notice the fault"
        status=1
    else
        echo "$patch: $filter failed, as it must:"
        grep -E "^thread '.*' .*panicked at" -A 2 /tmp/moat-fault.log | grep -v "^\[" | head -6 | sed 's/^/    /'
    fi
done
exit "${status:-0}"
