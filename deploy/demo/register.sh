#!/bin/sh
# Compose demo (service "register"): admit the three sites' keys. In a real consortium the
# coordinator runs this once per hospital with the .pub file the hospital sent.
set -eu
fedmm server register-site /deploy/site-0/keys/site.key.pub --name site-0 \
  --config /deploy/server/server.toml
fedmm server register-site /deploy/site-1/keys/site.key.pub --name site-1 \
  --config /deploy/server/server.toml
fedmm server register-site /deploy/site-2/keys/site.key.pub --name site-2 \
  --config /deploy/server/server.toml
fedmm server sites --config /deploy/server/server.toml
