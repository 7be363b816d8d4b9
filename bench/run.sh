#!/bin/sh
# make bench: every component benchmark in turn (never part of make check).
# Each prints a Markdown section; bench/RESULTS.md keeps the figures with
# the machine and the date. First Hermod and Postfix side by side on the
# same load (bench/compare.py: installs Postfix when missing, runs a
# private instance, needs root), then the component benchmarks.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export HERMOD_BIN=${HERMOD_BIN:-$top/bin}
echo "# Hermod benchmarks, $(date -u +%Y-%m-%d), $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB"
rc=0
if [ "$(id -u)" = 0 ]; then
	/usr/bin/python3 bench/compare.py ${COMPARE_ARGS:-} || rc=1
else
	echo "bench/compare.py skipped: it needs root (Postfix's master, system accounts)"
fi
sh bench/tables_bench.sh "${TABLE_ENTRIES:-1000000}" || rc=1
/usr/bin/python3 bench/lmtpd_bench.py || rc=1
/usr/bin/python3 bench/queued_bench.py || rc=1
/usr/bin/python3 bench/smtpd_bench.py || rc=1
sh bench/faults.sh "${FAULT_SECONDS:-120}" || rc=1
exit $rc
