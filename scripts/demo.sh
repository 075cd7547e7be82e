#!/usr/bin/env bash
# The main job: shows what corral does on this host. Grows with every engine that lands.
set -euo pipefail
cd "$(dirname "$0")/.."
CORRAL=${CORRAL:-target/release/corral}

step() { printf '\n\033[1m## %s\033[0m\n' "$*"; }

step "corral version"
"$CORRAL" version

step "corral doctor: what this host can run"
"$CORRAL" doctor
