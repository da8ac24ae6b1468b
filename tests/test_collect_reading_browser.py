"""Reading by keyboard in Chromium: the prompt and the responses are read-only text boxes that Tab
reaches, so a response longer than its box scrolls with the arrow keys; nothing typed there changes
it, and the voting keys still work from it. And an item the annotator cannot judge is skipped
(`s`): the next item comes, and the skipped one never comes back to them."""
import re

import pytest

from browser import artifacts_dir, login_page, serving
from browser import chromium_browser as browser  # noqa: F401 - the module's browser fixture
from browser import sync_api

sync_api()  # skips this module without chromium or playwright

from collect.app_common import RESPONSE_LINES, AppConfig  # noqa: E402
from collect.assign import add_items  # noqa: E402
from collect.store import open_store  # noqa: E402
from collect.users import add_user  # noqa: E402

PASSWORD = "correct horse battery"
LONG = "\n".join(f"Step {k}: do the next thing." for k in range(1, 2 * RESPONSE_LINES)) + "\nThe last line."


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = open_store(tmp_path_factory.mktemp("reading") / "annotations.db")
    add_user(store, "alice", "annotator", PASSWORD)
    add_user(store, "sam", "annotator", PASSWORD)
    add_items(store, [{"id": "long", "prompt": "How do I set it up?", "response_a": LONG, "response_b": "Short."}]
              + [{"id": f"s{k}", "prompt": f"Is the shop open on day {k}?", "response_a": "Yes.",
                  "response_b": "No."} for k in range(2)])
    with serving(store, AppConfig(overlap=1, gold_rate=0.0)) as url:
        yield url
    store.close()


def test_a_response_longer_than_its_box_is_read_with_the_keyboard(browser, server):
    page = login_page(browser, server, "alice", PASSWORD, 1280, 800)
    page.locator("#progress").filter(has_text="Item 1 of 3").wait_for()
    side = "left" if page.locator("#response-left textarea").input_value() == LONG else "right"
    box = page.locator(f"#response-{side} textarea")
    page.wait_for_function("() => document.querySelector('#response-left textarea')?.disabled === false")
    assert box.evaluate("(t) => [t.disabled, t.readOnly]") == [False, True]
    assert box.evaluate("(t) => t.scrollHeight - t.clientHeight") > 100  # longer than its box

    page.locator("#prompt textarea").focus()  # Tab goes from the prompt to Response 1, then 2
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('[id^=response-]').id") == "response-left"
    box.focus()
    for _ in range(5):
        page.keyboard.press("ArrowDown")
    page.keyboard.press("PageDown")
    assert box.evaluate("(t) => t.scrollTop") > 0  # the arrows scrolled the text, not the page's focus
    assert page.evaluate("document.activeElement.closest('[id^=response-]').id") == f"response-{side}"
    page.keyboard.type("xyz")
    assert box.input_value() == LONG  # read-only
    page.keyboard.press("1")  # a voting key still chooses from there
    assert page.locator("#choice input:checked").get_attribute("value") == "left"
    page.close()


def test_an_item_skipped_goes_and_never_comes_back(browser, server):
    page = login_page(browser, server, "sam", PASSWORD, 1280, 800)
    progress = page.locator("#progress")
    progress.filter(has_text="Item 1 of").wait_for()
    total = int(re.search(r"Item 1 of (\d+)", progress.inner_text()).group(1))
    first = page.locator("#prompt textarea").input_value()
    assert "s skips an item you cannot judge" in page.locator("#key-map").inner_text().replace("`", "")
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("s")
    page.locator("#annotate-status").filter(
        has_text="Skipped the previous item: it goes to other annotators, and not back to you.").wait_for()
    progress.filter(has_text=f"Item 1 of {total - 1}").wait_for()  # still item 1: nothing was done
    page.screenshot(path=artifacts_dir() / "collect-skipped.png", full_page=True)
    seen = []
    for _ in range(total):
        if "All done" in progress.inner_text():
            break
        shown = page.locator("#prompt textarea").input_value()
        assert shown != first
        seen.append(shown)
        page.evaluate("document.activeElement && document.activeElement.blur()")
        page.keyboard.press("t")
        page.keyboard.press("Enter")
        page.wait_for_function("(p) => document.querySelector('#progress')?.innerText.includes('All done') || "
                               "(document.querySelector('#prompt textarea')?.value ?? p) !== p", arg=shown)
    progress.filter(has_text="All done").wait_for()
    page.reload()
    progress.filter(has_text="All done").wait_for()  # and not the skipped item again
    assert first not in seen and len(seen) == total - 1
    page.locator("#logout").click()  # the app's own log-out link still works
    page.get_by_label("username").wait_for()
    page.close()
