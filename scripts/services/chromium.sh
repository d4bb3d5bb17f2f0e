# Debian's Chromium for the dashboard's browser test (e2e/browser_test.go,
# driven by chromedp). Sourced by scripts/test.sh after scripts/lib.sh;
# installs the package when missing and exports CAIRN_TEST_CHROMIUM, the
# browser's path. The test starts (and ends) its own headless browser.
if ! command -v chromium >/dev/null 2>&1; then
  apt_install chromium
fi
CAIRN_TEST_CHROMIUM="$(command -v chromium)"
export CAIRN_TEST_CHROMIUM
echo "$("$CAIRN_TEST_CHROMIUM" --version 2>/dev/null) at $CAIRN_TEST_CHROMIUM"
