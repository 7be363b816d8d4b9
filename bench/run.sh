#!/bin/sh
# make bench: every component benchmark in turn (never part of make check).
# Each prints a Markdown section; bench/RESULTS.md keeps the figures with
# the machine and the date. The side-by-side runs against Postfix
# (smtp-source/smtp-sink, issue 10) are to come: until then the load
# generators are the Python ones in this directory.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export HERMOD_BIN=${HERMOD_BIN:-$top/bin}
echo "# Hermod benchmarks, $(date -u +%Y-%m-%d), $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB"
rc=0
sh bench/tables_bench.sh "${TABLE_ENTRIES:-1000000}" || rc=1
/usr/bin/python3 bench/lmtpd_bench.py || rc=1
/usr/bin/python3 bench/queued_bench.py || rc=1
/usr/bin/python3 bench/smtpd_bench.py || rc=1
sh bench/faults.sh "${FAULT_SECONDS:-120}" || rc=1
exit $rc
