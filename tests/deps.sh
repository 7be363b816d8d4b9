#!/bin/sh
# Installs the Debian packages that building, testing and running Hermod
# need, when they are missing. As root it runs apt-get; otherwise it prints
# the exact command to run and stops.
set -e
PKGS="build-essential pkg-config libssl-dev libevent-dev libc-ares-dev libdb-dev
libcrypt-dev libbsd-dev clang libclang-rt-14-dev python3 python3-pytest
python3-aiosmtpd python3-dnslib swaks libnet-ssleay-perl openssl mandoc man-db procps iproute2
util-linux e2fsprogs postfix"
[ -n "$HERMOD_EXTRA_PKGS" ] && PKGS="$PKGS $HERMOD_EXTRA_PKGS"

missing=""
for p in $PKGS; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$st" in
	*"ok installed"*) ;;
	*) missing="$missing $p" ;;
	esac
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "deps: missing packages:$missing" >&2
	echo "deps: run as root: apt-get update && apt-get install -y$missing" >&2
	exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# postfix is a peer for the interoperation tests (tests/e2e/
# test_interop_postfix.py runs a private instance): installed with "No
# configuration", so no system instance is set up or started.
case "$missing" in
*" postfix"*)
	echo 'postfix postfix/main_mailer_type select No configuration' |
	    debconf-set-selections ;;
esac
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
