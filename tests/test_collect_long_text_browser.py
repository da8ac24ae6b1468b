"""Long texts in Chromium: a response of 40 lines and a prompt of 15 are shown whole, with no
scrolling inside their boxes, to an annotator and to a safety reviewer, so they read all of an
answer before they judge it (on a
system with overlay scrollbars nothing shows that a box holds more than it displays). A
screenshot goes to artifacts_dir() ($RLHF_TEST_ARTIFACTS, else test-artifacts/)."""
import pytest

from browser import artifacts_dir, login_page, serving
from browser import chromium_browser as browser  # noqa: F401 - the module's browser fixture
from browser import sync_api

sync_api()  # skips this module without chromium or playwright

from collect.app_common import AppConfig  # noqa: E402
from collect.assign import add_items  # noqa: E402
from collect.review import flag_output  # noqa: E402
from collect.store import open_store  # noqa: E402
from collect.users import add_user  # noqa: E402

PASSWORD = "correct horse battery"
LONG = "\n".join(f"Step {k}: do the next thing." for k in range(1, 41)) + "\nThe last line."
PROMPT = "\n".join(f"Line {k} of a long question." for k in range(1, 16))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = open_store(tmp_path_factory.mktemp("long") / "annotations.db")
    add_user(store, "alice", "annotator", PASSWORD)
    add_user(store, "rita", "reviewer", PASSWORD)
    add_items(store, [{"id": "long", "prompt": PROMPT, "response_a": LONG, "response_b": "Short."}])
    flag_output(store, "long", "a", reason="eval audit: a long answer")
    with serving(store, AppConfig(overlap=1, gold_rate=0.0)) as url:
        yield url
    store.close()


def hidden_pixels(page, selector: str) -> int:
    """How much of the box's text lies outside what it shows (0: all of it is in view)."""
    return page.locator(f"{selector} textarea").evaluate("(t) => t.scrollHeight - t.clientHeight")


def test_a_long_response_and_prompt_are_shown_whole(browser, server):
    page = login_page(browser, server, "alice", PASSWORD, 1280, 800)
    page.locator("#progress").filter(has_text="Item 1 of 1").wait_for()
    side = "#response-left" if page.locator("#response-left textarea").input_value() == LONG else "#response-right"
    assert page.locator(f"{side} textarea").input_value() == LONG
    page.wait_for_timeout(300)  # the boxes size themselves to their text after it arrives
    assert hidden_pixels(page, side) <= 2 and hidden_pixels(page, "#prompt") <= 2
    page.locator(side).scroll_into_view_if_needed()
    page.screenshot(path=artifacts_dir() / "collect-long-response.png", full_page=True)


def test_a_reviewer_reads_a_long_flagged_response_whole(browser, server):
    page = login_page(browser, server, "rita", PASSWORD, 1280, 800)
    page.wait_for_function("() => document.querySelector('#review-response textarea')?.value"
                           ".endsWith('The last line.')")
    page.wait_for_timeout(300)
    assert hidden_pixels(page, "#review-response") <= 2 and hidden_pixels(page, "#review-prompt") <= 2
