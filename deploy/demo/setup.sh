#!/bin/sh
# Compose demo, one-shot set-up (deploy/compose.yaml, service "setup"): the coordinator
# folder, phantom data for three hospitals and one site folder per hospital, in /deploy.
# In a real consortium each `fedmm site init` runs at its own hospital.
set -eu
if [ -f /deploy/server/server.toml ]; then
  echo "/deploy is already set up; remove the volume (docker compose down -v) to start over."
  exit 0
fi
# The CA's private key goes to /ca-offline, a volume only this one-shot service mounts.
fedmm server init --out /deploy/server --dns superlink \
  --public-address superlink:9093 --ca-key-dir /ca-offline
fedmm phantom --sites 3 --subjects-per-site 6 --spacing-mm 4 --out /deploy/phantom
cp /opt/fedmm/deploy/examples/run-demo.toml /deploy/run.toml
fedmm site init --name site-0 --data /deploy/phantom/site-0 --out /deploy/site-0 \
  --server superlink:9093 --ca-cert /deploy/server/certs/ca.crt --run-file /deploy/run.toml
fedmm site init --name site-1 --data /deploy/phantom/site-1 --out /deploy/site-1 \
  --server superlink:9093 --ca-cert /deploy/server/certs/ca.crt --run-file /deploy/run.toml
fedmm site init --name site-2 --data /deploy/phantom/site-2 --out /deploy/site-2 \
  --server superlink:9093 --ca-cert /deploy/server/certs/ca.crt --run-file /deploy/run.toml
fedmm site check --config /deploy/site-0/site.toml
