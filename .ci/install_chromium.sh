#!/usr/bin/env bash
# Debian's chromium for the Playwright browser tests (tests/test_collect_browser.py).
# Playwright's own browser download needs the internet; the distribution package does not
# need a second download channel and is patched by the distribution's security updates.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium fonts-liberation
/usr/bin/chromium --version
