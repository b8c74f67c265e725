#!/bin/sh
# The one-shot service kappa-init of docker-compose.yml (kappa image, as root): the cluster's
# CA, a certificate per Kappa process and the REST API's token, made on the first start and
# kept in the volume kappa-ca (mounted at /kappa-ca, in this service only). Each process then
# gets only its own files in its own volume, mounted here at /secrets/<name> and in the
# process's container read-only at /kappa-secrets:
#
#   /secrets/<name>/cert.pem, key.pem   the certificate of identity <role>/<name>, which names
#                                       the host <name> (its compose service) with localhost
#                                       and 127.0.0.1; key readable by uid 10001 only
#   /secrets/<name>/ca.pem              the cluster CA
#   /secrets/jobmanager/token           the REST token (jobmanager identities only)
#   /secrets/prometheus/{ca.pem,token}  for scraping, readable by Prometheus' nobody (65534)
#
#   sh kappa-init.sh jobmanager/jobmanager taskmanager/taskmanager-1 …
#
# Idempotent: what exists is kept; a certificate is issued again once it is 300 days old
# (`kappa certs` makes them valid for 365), and the processes take it when they restart.
# KAPPA_INIT_ROOT (where the volumes are, default /) and KAPPA_BIN (default kappa) let
# scripts/check_deploy.py run it outside a container.
set -eu
umask 077
root=${KAPPA_INIT_ROOT:-}
kappa=${KAPPA_BIN:-kappa}
ca=$root/kappa-ca
kappa_uid=10001
prometheus_uid=65534

[ "$#" -gt 0 ] || { echo "kappa-init: name the identities (jobmanager/NAME, taskmanager/ID)" >&2; exit 2; }
mkdir -p "$ca"
if [ ! -f "$ca/ca.pem" ]; then
  "$kappa" certs init --dir "$ca"
fi
if [ ! -s "$ca/token" ]; then
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$ca/token.new"
  mv "$ca/token.new" "$ca/token"
  echo "kappa-init: new REST token in $ca/token"
fi

# put FILE DEST MODE UID: copy FILE to DEST (owned by UID when run as root).
put() {
  cp "$1" "$2.new"
  chmod "$3" "$2.new"
  if [ "$(id -u)" = 0 ]; then chown "$4:$4" "$2.new"; fi
  mv -f "$2.new" "$2"
}

for identity in "$@"; do
  role=${identity%%/*}
  name=${identity#*/}
  case "$role" in jobmanager|taskmanager) ;; *) echo "kappa-init: $identity is not jobmanager/NAME or taskmanager/ID" >&2; exit 2 ;; esac
  stem="$role-$name"
  if [ ! -f "$ca/$stem.pem" ] || [ ! -f "$ca/$stem-key.pem" ] ||
     [ -n "$(find "$ca/$stem.pem" -mtime +300)" ]; then
    rm -f "$ca/$stem.pem" "$ca/$stem-key.pem"
    "$kappa" certs issue --dir "$ca" --host "$name" "$identity"
  fi
  out=$root/secrets/$name
  [ -d "$out" ] || { echo "kappa-init: no volume mounted at $out for $identity" >&2; exit 1; }
  chmod 0700 "$out"
  put "$ca/ca.pem" "$out/ca.pem" 0444 "$kappa_uid"
  put "$ca/$stem.pem" "$out/cert.pem" 0444 "$kappa_uid"
  put "$ca/$stem-key.pem" "$out/key.pem" 0400 "$kappa_uid"
  if [ "$role" = jobmanager ]; then put "$ca/token" "$out/token" 0400 "$kappa_uid"; fi
  chmod 0500 "$out"
  if [ "$(id -u)" = 0 ]; then chown "$kappa_uid:$kappa_uid" "$out"; fi
done

if [ -d "$root/secrets/prometheus" ]; then
  chmod 0700 "$root/secrets/prometheus"
  put "$ca/ca.pem" "$root/secrets/prometheus/ca.pem" 0444 "$prometheus_uid"
  put "$ca/token" "$root/secrets/prometheus/token" 0400 "$prometheus_uid"
  chmod 0500 "$root/secrets/prometheus"
  if [ "$(id -u)" = 0 ]; then chown "$prometheus_uid:$prometheus_uid" "$root/secrets/prometheus"; fi
fi
echo "kappa-init: certificates and token in place for $*"
