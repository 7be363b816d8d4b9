#!/bin/sh
# Regenerates what comes from the config key table (lib/conf_keys.h):
#   - the KEYS section of man/hermod.conf.5, between its BEGIN KEYS and
#     END KEYS marker comments, from `hermod config -m`;
#   - conf/hermod.conf, the installed default file: a header and every
#     key commented out at its default, from `hermod config -s`.
# Run it from the top of the checkout after `make` (bin/ or $HERMOD_BIN)
# whenever conf_keys.h changes, and commit the result; the e2e test
# tests/e2e/test_config.py fails when the page is out of date.
set -eu
bin=${HERMOD_BIN:-bin}
page=man/hermod.conf.5
sample=conf/hermod.conf
tmp=$(mktemp)
keys=$(mktemp)
trap 'rm -f "$tmp" "$keys"' EXIT

# -c /dev/null: the table's defaults, whatever this machine's config says.
"$bin/hermod" -c /dev/null config -m >"$keys"
grep -q '^\.\\" BEGIN KEYS' "$page" && grep -q '^\.\\" END KEYS' "$page" || {
	echo "$page: marker comments BEGIN KEYS / END KEYS missing" >&2
	exit 1
}
awk -v keys="$keys" '
	/^\.\\" END KEYS/ { skip = 0 }
	!skip { print }
	/^\.\\" BEGIN KEYS/ {
		while ((getline line < keys) > 0)
			print line
		skip = 1
	}
' "$page" >"$tmp"
cat "$tmp" >"$page"

{
	cat <<'HEAD'
# hermod.conf: the configuration of the Hermod mail system.
#
# Syntax: `name = value`; a line starting with white space continues the
# line before; `#` starts a comment line; `$name` expands to another
# key's value. Times take s m h d w suffixes, sizes k m g (powers of
# 1024). See hermod.conf(5) for every key, and run `hermod config -n`
# to see what this file changes, `hermod config` for all settings.
#
# Every key is listed below, commented out, at its default.
HEAD
	"$bin/hermod" -c /dev/null config -s
} >"$sample"
echo "updated $page and $sample"
