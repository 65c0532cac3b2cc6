#!/usr/bin/env bash
# The project's test command: every crate's unit, integration and doc tests. It first installs
# what the build and the tests need and is missing (scripts/install-deps.sh), so it works on a
# fresh machine as it is. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
exec cargo test --workspace --locked "$@"
