#!/bin/sh
# Fault injection, the long version (issue 10, part 2; never part of make
# check): the kill -9 test of tests/e2e/test_faults.py run for minutes
# instead of seconds. Under a steady load of concurrent SMTP clients,
# smtpd, queued or lmtpd is killed at random moments (a seeded RNG; the
# seed is printed, HERMOD_FAULT_SEED replays a run) and restarted; then the
# queue is drained and every message a client saw a 250 for must be in the
# Maildir. Prints a Markdown section: losses (must be 0) and duplicates.
#
#     sh bench/faults.sh [SECONDS] [CLIENTS]
# Environment: HERMOD_BIN (default bin/), HERMOD_FAULT_PACE (seconds
# between a client's messages, default 0.02), HERMOD_FAULT_SEED.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export HERMOD_BIN=${HERMOD_BIN:-$top/bin}
export HERMOD_FAULT_SECONDS=${1:-${HERMOD_FAULT_SECONDS:-120}}
export HERMOD_FAULT_CLIENTS=${2:-${HERMOD_FAULT_CLIENTS:-8}}
export HERMOD_FAULT_ROUNDS=${HERMOD_FAULT_ROUNDS:-9}
export HERMOD_FAULT_PACE=${HERMOD_FAULT_PACE:-0.02}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hermod-faults.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
out=$tmp/pytest.out
# a private copy of the programs: a rebuild meanwhile must not swap them
# under a run of minutes
mkdir "$tmp/bin" && cp -a "$HERMOD_BIN"/. "$tmp/bin/" && chmod 755 "$tmp" "$tmp/bin" || exit 1
bin_from=$HERMOD_BIN
export HERMOD_BIN=$tmp/bin

printf "## Fault injection: kill -9 under load\n\n"
echo "${HERMOD_FAULT_SECONDS} s of load, ${HERMOD_FAULT_CLIENTS} SMTP clients, binaries from ${bin_from}."
/usr/bin/python3 -m pytest -q -s -p no:cacheprovider \
    "tests/e2e/test_faults.py::test_kill9_under_load_loses_nothing" >"$out" 2>&1
rc=$?
line=$(grep '^faults: ' "$out" | tail -1)
if [ -z "$line" ]; then
	printf "\nno result (pytest exit %s):\n\n" "$rc"
	tail -40 "$out" | sed 's/^/    /'
	exit 1
fi
echo
echo "| key | value |"
echo "|---|---:|"
echo "${line#faults: }" | tr ' ' '\n' | awk -F= 'NF == 2 { printf "| %s | %s |\n", $1, $2 }'
if [ $rc -ne 0 ]; then
	printf "\nFAILED (pytest exit %s):\n\n" "$rc"
	grep -E '^E ' "$out" | head -20 | sed 's/^/    /'
fi
exit $rc
