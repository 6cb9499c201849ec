#!/usr/bin/env bash
# Debian's Chromium and its WebDriver, for the tests that open the HTML report in a real browser (selenium) and
# for kaleido, which renders plotly figures to PNG through a Chromium it finds on PATH.
#
#   .ci/chromium.sh   installs `chromium` and `chromium-driver` with apt-get when either is missing; as root only
#                     (elsewhere it says what to run and exits 0: those tests then skip, unless
#                     LATENCYSOLVER_REQUIRE_CHROMIUM=1 turns the skip into a failure, as .ci/run does).
set -euo pipefail
say() { echo "chromium.sh: $*" >&2; }

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    say "chromium or chromedriver missing; install them with: sudo apt-get install -y chromium chromium-driver"
    exit 0
fi
say "installing chromium and chromium-driver with apt-get"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q chromium chromium-driver >/tmp/latencysolver-chromium-apt.log 2>&1; then
    apt-get update -q >>/tmp/latencysolver-chromium-apt.log 2>&1
    apt-get install -y -q chromium chromium-driver >>/tmp/latencysolver-chromium-apt.log 2>&1 \
        || { say "apt-get failed; see /tmp/latencysolver-chromium-apt.log"; exit 1; }
fi
say "$(chromium --version 2>/dev/null | head -n 1)"
