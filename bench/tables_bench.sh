#!/bin/sh
# Tables benchmark (issue 3): build a 1,000,000-entry aliases file and a
# 1,000,000-entry users file, time newaliases on them, then time lookups
# the way the daemons do them (one open map, random keys: bench/
# tables_lookup.c) and the way an admin does (`hermod lookup`, a process
# per address). Figures go to stdout; bench/RESULTS.md keeps them.
#
#     sh bench/tables_bench.sh [ENTRIES] [LOOKUPS]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${HERMOD_BIN:-$top/bin}
n=${1:-1000000}
lookups=${2:-1000000}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hermod-tables-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

cd "$top"
make -s build/libhermod.a
cc -std=gnu11 -O2 -D_GNU_SOURCE -Ilib -o "$tmp/tables_lookup" \
    bench/tables_lookup.c build/libhermod.a -ldb

awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++)
    printf "user%d: target%d@example.org, local%d\n", i, i, i }' >"$tmp/aliases"
awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++)
    printf "u%d@example.com /var/mail/vhosts/u%d/ uid=1000 gid=1000 quota=100m\n", i, i }' >"$tmp/users"
cat >"$tmp/hermod.conf" <<CONF
alias_maps = $tmp/aliases
user_maps = $tmp/users
mydestination = example.com
local_system_users = no
CONF

sed 's/^user_maps = .*/user_maps =/' "$tmp/hermod.conf" >"$tmp/aliases-only.conf"
sed 's/^alias_maps = .*/alias_maps =/' "$tmp/hermod.conf" >"$tmp/users-only.conf"

now() { date +%s.%N; }
timed() {	# timed LABEL CONF
	t0=$(now)
	"$bin/newaliases" -c "$2" >/dev/null
	t1=$(now)
	printf '%s: %.2f s\n' "$1" "$(echo "$t1 - $t0" | bc)"
}
echo "entries: $n per table; filesystem: $(df -T "$tmp" | awk 'NR==2 {print $2}')"
timed "newaliases, aliases only ($n entries)" "$tmp/aliases-only.conf"
timed "newaliases, users only ($n entries)" "$tmp/users-only.conf"
timed "newaliases, both tables ($((2 * n)) entries)" "$tmp/hermod.conf"
timed "newaliases, rebuild over existing tables" "$tmp/hermod.conf"
ls -l "$tmp/aliases" "$tmp/aliases.db" "$tmp/users" "$tmp/users.db" |
    awk '{ printf "  %-12s %6.1f MB\n", $NF, $5 / 1e6 }' | sed "s|$tmp/||"

echo "map_lookup, one open map, $lookups random keys each:"
printf '  aliases.db: '; "$tmp/tables_lookup" "$tmp/aliases.db" user "$n" "$lookups"
printf '  users.db:   '; "$tmp/tables_lookup" "$tmp/users.db" u "$n" "$lookups" @example.com

runs=200
t0=$(now)
i=0
while [ $i -lt $runs ]; do
	"$bin/hermod" -c "$tmp/hermod.conf" lookup "user$((i * 4999 % n))@example.com" >/dev/null || true
	i=$((i + 1))
done
t1=$(now)
echo "hermod lookup (a process each, alias + users lookups): $(echo "($t1 - $t0) * 1000 / $runs" | bc -l | cut -c1-5) ms per run"
