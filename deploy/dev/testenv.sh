#!/usr/bin/env bash
# Provides the real components the integration tests use and prints the
# environment for them as shell `export` lines:
#   eval "$(deploy/dev/testenv.sh)"
# Installs Debian packages (softhsm2, opensc, swtpm, tpm2-abrmd, tpm2-pkcs11,
# postgresql) when missing, unpacks promtool from Debian's prometheus package,
# and
# starts a local Postgres when none answers on 127.0.0.1:5432.
# Everything it says goes to stderr; only the export lines go to stdout.
set -euo pipefail

log() { echo "testenv: $*" >&2; }

apt_install() {
	if ! command -v apt-get >/dev/null; then
		log "apt-get not found; install $* by hand"
		return 1
	fi
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	if [ ! -f /tmp/.tier0-apt-updated ]; then
		$sudo apt-get update -qq >&2 && touch /tmp/.tier0-apt-updated
	fi
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >&2
}

# --- SoftHSM2 + OpenSC -------------------------------------------------------
need=()
command -v softhsm2-util >/dev/null || need+=(softhsm2)
command -v pkcs11-tool >/dev/null || need+=(opensc)
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	apt_install "${need[@]}"
fi
module=""
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
	if [ -f "$m" ]; then module="$m"; break; fi
done
[ -n "$module" ] || { log "libsofthsm2.so not found"; exit 1; }

# --- TPM token: tpm2-pkcs11 on swtpm through tpm2-abrmd (signer tests) ----------
need=()
command -v swtpm >/dev/null || need+=(swtpm libtss2-tcti-swtpm0)
command -v tpm2-abrmd >/dev/null || need+=(tpm2-abrmd libtss2-tcti-tabrmd0)
command -v tpm2_ptool >/dev/null || need+=(libtpm2-pkcs11-1 libtpm2-pkcs11-tools)
command -v dbus-daemon >/dev/null || need+=(dbus-daemon)
command -v dbus-send >/dev/null || need+=(dbus-bin)
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	apt_install --no-install-recommends "${need[@]}"
fi
tpm2module=""
for m in /usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so /usr/lib/aarch64-linux-gnu/pkcs11/libtpm2_pkcs11.so /usr/lib/x86_64-linux-gnu/libtpm2_pkcs11.so.1 /usr/local/lib/libtpm2_pkcs11.so; do
	if [ -f "$m" ]; then tpm2module="$m"; break; fi
done
[ -n "$tpm2module" ] || { log "libtpm2_pkcs11.so not found"; exit 1; }
# --- promtool ----------------------------------------------------------------
# Debian's prometheus package provides promtool. Installing the package would
# also start a Prometheus server (its postinst), so its files are unpacked
# into a cache directory instead and only promtool is used.
promtool=$(command -v promtool || true)
if [ -z "$promtool" ]; then
	cache="${XDG_CACHE_HOME:-$HOME/.cache}/tier0-testenv/prometheus"
	promtool="$cache/usr/bin/promtool"
	if [ ! -x "$promtool" ]; then
		log "unpacking Debian's prometheus package for promtool into $cache"
		[ -f /tmp/.tier0-apt-updated ] || { apt-get update -qq >&2 && touch /tmp/.tier0-apt-updated; }
		tmp=$(mktemp -d)
		(cd "$tmp" && apt-get download prometheus >&2 2>/dev/null) || { log "apt-get download prometheus failed"; exit 1; }
		mkdir -p "$cache"
		dpkg-deb -x "$tmp"/prometheus_*.deb "$cache"
		rm -rf "$tmp"
	fi
	"$promtool" --version >/dev/null 2>&1 || { log "promtool at $promtool does not run"; exit 1; }
fi

# --- Postgres ----------------------------------------------------------------
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if ! command -v pg_isready >/dev/null; then
	log "installing postgresql"
	apt_install postgresql postgresql-client
fi
if ! pg_up; then
	if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
		log "installing postgresql server"
		apt_install postgresql
	fi
	ver=$(ls /etc/postgresql | sort -V | tail -1)
	log "starting postgres $ver"
	pg_ctlcluster --skip-systemctl-redirect "$ver" main start >&2 || pg_ctlcluster "$ver" main start >&2 || true
	for _ in $(seq 1 60); do pg_up && break; sleep 0.5; done
	pg_up || { log "postgres did not come up on 127.0.0.1:5432"; exit 1; }
fi
dsn="postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
if ! psql "$dsn" -qtAc 'select 1' >/dev/null 2>&1; then
	# A fresh Debian install uses password auth on TCP: give the postgres role one.
	log "setting a local test password for role postgres"
	su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'tier0test'\"" >&2
	dsn="postgres://postgres:tier0test@127.0.0.1:5432/postgres?sslmode=disable"
	psql "$dsn" -qtAc 'select 1' >/dev/null
fi
psql "$dsn" -qtAc "select 1 from pg_database where datname='tier0_test'" | grep -q 1 ||
	psql "$dsn" -qc 'create database tier0_test' >&2
test_dsn="${dsn%%/postgres\?*}/tier0_test?sslmode=disable"

echo "export TEST_DATABASE_URL='$test_dsn'"
echo "export TEST_PKCS11_MODULE='$module'"
echo "export TEST_SOFTHSM2_UTIL='$(command -v softhsm2-util)'"
echo "export TEST_PKCS11_TOOL='$(command -v pkcs11-tool)'"
echo "export TEST_TPM2_PKCS11_MODULE='$tpm2module'"
echo "export TEST_PG_BIN='$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)'"
echo "export TEST_PROMTOOL='$promtool'"
echo "export TIER0_REQUIRE_INTEGRATION=1"
