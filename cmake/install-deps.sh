#!/bin/sh
# Installs what building movable's tests, demo and benchmarks needs, from Debian's packages
# only, and only what is missing. Safe to run again.
# Usage: sh cmake/install-deps.sh [extra-pkg...]   everything below (plus extra packages)
#        sh cmake/install-deps.sh --demo           only what the demo needs (the generator)
#   ninja-build       the presets' generator
#   doctest-dev       unit tests
#   libbenchmark-dev  benchmarks
#   libjemalloc-dev, libmimalloc-dev   allocators the benchmarks compare against
set -eu

if [ "${1:-}" = "--demo" ]; then
    packages="ninja-build"
else
    packages="ninja-build doctest-dev libbenchmark-dev libjemalloc-dev libmimalloc-dev $*"
fi
missing=""
for package in $packages; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $package"
    fi
done
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: missing$missing and this is not a Debian system; install them by hand" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing$missing; run as root, or: sudo apt-get install$missing" >&2
    exit 1
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists yet; update only when an install fails for lack of them.
apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends $missing >/dev/null
}
