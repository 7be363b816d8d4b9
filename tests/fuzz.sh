#!/bin/sh
# Runs each fuzzer for $1 seconds with its seed corpus (fuzz/corpus/NAME)
# and dictionary (fuzz/NAME.dict) when present. Exits non-zero on a crash.
secs=$1; shift
fail=0
for f in "$@"; do
	corpus=build/fuzz/corpus/$f
	mkdir -p "$corpus"
	[ -d fuzz/corpus/$f ] && cp -n fuzz/corpus/$f/* "$corpus"/ 2>/dev/null
	dict=""
	[ -f fuzz/$f.dict ] && dict="-dict=fuzz/$f.dict"
	if build/fuzz/fuzzer/$f -max_total_time="$secs" -rss_limit_mb=1024 \
	    -artifact_prefix=build/fuzz/ $dict "$corpus" >build/fuzz/$f.log 2>&1; then
		echo "fuzz $f: ok ($(grep -c . "$corpus"/* 2>/dev/null | wc -l) inputs, ${secs}s)"
	else
		echo "fuzz $f: FAILED, see build/fuzz/$f.log"
		tail -40 build/fuzz/$f.log
		fail=1
	fi
done
exit $fail
