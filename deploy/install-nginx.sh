#!/usr/bin/env bash
# Installs nginx, the coordinator's reverse proxy, from the distribution's packages when it
# is missing (`make test` and `.ci/run` call this; the deployment tests start it). The
# package's own service is not started: fedmm runs nginx with its own config.
set -euo pipefail
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "nginx is missing and this is not a Debian/Ubuntu machine: install nginx with your" \
         "package manager (fedmm's coordinator and its deployment tests need it)." >&2
    exit 1
fi
sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
echo "Installing nginx (Debian's package: the coordinator's reverse proxy)"
# Keep the package from starting its own service on port 80 (containers, CI).
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    created_policy=1
fi
status=0
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq || status=$?
if [ "$status" -eq 0 ]; then
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx \
        >/dev/null || status=$?
fi
if [ "$created_policy" -eq 1 ]; then
    $sudo rm -f /usr/sbin/policy-rc.d
fi
exit "$status"
