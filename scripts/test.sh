#!/usr/bin/env bash
# The project's test command: every crate's unit, integration and doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --workspace --locked "$@"
