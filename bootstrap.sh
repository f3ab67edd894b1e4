#!/usr/bin/env bash
# Installs what troupe needs to build, test and benchmark on Debian 12.
# Idempotent: packages already present are skipped by apt.
#
#   ./bootstrap.sh                build, test, `b2 bench`
#   ./bootstrap.sh --http-bench   also wrk and nginx-light for
#                                 test/bench/wrk_http.sh (opt-in: Debian's
#                                 nginx package starts a server on port 80)
set -euo pipefail

packages=(
  g++
  liburing-dev
  libboost1.81-dev
  libboost-test1.81-dev
  libboost1.81-tools-dev   # b2
  libspdlog-dev
  libfmt-dev
  libcaf-dev               # CAF 0.17, peer in test/bench
  libxxhash-dev            # examples/checksum hashes with XXH3
  xxhash                   # xxhsum: the reference its output is checked against
  libc-ares-dev            # actors/resolver: asynchronous DNS driven from the ring
)

for a in "$@"; do
  case $a in
    --http-bench) packages+=(wrk nginx-light) ;;
    *) echo "usage: $0 [--http-bench]" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
