"""The run report (eval/report.py) in a real browser: every inline plot decodes, nothing logs an
error, the hostile model output stays text. A full-page screenshot goes to $RLHF_TEST_ARTIFACTS
(else test-artifacts/).

Chromium comes from `.ci/install_chromium.sh` (apt's chromium): without /usr/bin/chromium the
module is skipped, saying so.
"""
from browser import ARGS, CHROMIUM, TIMEOUT, artifacts_dir
from browser import sync_api as _sync_api

sync_api = _sync_api()

from eval.report import write_report  # noqa: E402
from report_fixtures import XSS, make_run  # noqa: E402


def test_report_in_chromium(tmp_path):
    report = write_report(make_run(tmp_path))
    shot = artifacts_dir() / "eval-report.png"
    errors, dialogs = [], []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(report.as_uri(), timeout=TIMEOUT)
            page.wait_for_load_state("load", timeout=TIMEOUT)
            widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
            n_scripts = page.locator("script").count()
            text = page.inner_text("body")
            page.screenshot(path=shot, full_page=True)
        finally:
            browser.close()
    assert len(widths) == 6 and all(w > 0 for w in widths), widths  # the payload's <img> is not one
    assert errors == [] and dialogs == []
    assert n_scripts == 0 and XSS in text  # shown as the text it is
    assert shot.exists() and shot.stat().st_size > 0
