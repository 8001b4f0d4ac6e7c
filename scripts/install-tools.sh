#!/usr/bin/env bash
# Installs the Debian tools the tests and benchmarks drive: dig, kdig, dnsperf, and the
# reference servers (NSD, Knot, dnsmasq, Unbound). Idempotent; services are never started,
# and the system units of the packages installed here are disabled again (the benchmark
# runs every server itself, in the foreground, on 127.0.0.1 high ports).
set -euo pipefail
need=()
command -v dig >/dev/null || need+=(bind9-dnsutils)
command -v kdig >/dev/null || need+=(knot-dnsutils)
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v nsd >/dev/null || [ -x /usr/sbin/nsd ] || need+=(nsd)
command -v knotd >/dev/null || [ -x /usr/sbin/knotd ] || need+=(knot)
command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
command -v unbound >/dev/null || [ -x /usr/sbin/unbound ] || need+=(unbound)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-tools: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d keeps Debian from starting the reference servers as system services.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Packaging enables the daemons' units at install time: undo that for what we installed.
units=()
for pkg in "${need[@]}"; do
  case "$pkg" in
    nsd) units+=(nsd.service) ;;
    knot) units+=(knot.service) ;;
    unbound) units+=(unbound.service unbound-resolvconf.service) ;;
  esac
done
if [ ${#units[@]} -gt 0 ] && command -v systemctl >/dev/null; then
  # Works without a running systemd too: it only removes the wants/ symlinks.
  $SUDO systemctl disable "${units[@]}" >/dev/null 2>&1 || true
fi
