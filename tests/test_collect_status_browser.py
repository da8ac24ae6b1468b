"""The annotator's status line in Chromium, read after each action: it says which item it is
about (after a submit, the previous one, while the next is on screen) and clears once the
annotator works on the item shown; and a late answer to an item whose lease ran out and that
another annotator took is refused in words, with the next item shown. Screenshots go to
artifacts_dir() ($RLHF_TEST_ARTIFACTS, else test-artifacts/).
"""
import pytest
from sqlalchemy import select, update

from browser import artifacts_dir, login_page, serving
from browser import chromium_browser as browser  # noqa: F401 - the module's browser fixture
from browser import sync_api
from databases import module_db_url  # noqa: F401 - SQLite and PostgreSQL

sync_api()  # skips this module without chromium or playwright

from collect.app_common import AppConfig  # noqa: E402
from collect.assign import add_items  # noqa: E402
from collect.store import Assignment, Vote, open_store  # noqa: E402
from collect.users import add_user  # noqa: E402

PASSWORD = "correct horse battery"
SAVED = "Saved your answer to the previous item; Undo [u] takes it back within 2 min."


@pytest.fixture(scope="module")
def server(module_db_url):  # one server on SQLite, one on PostgreSQL
    store = open_store(module_db_url)
    for name in ("alice", "carol", "dave"):
        add_user(store, name, "annotator", PASSWORD)
    add_items(store, [{"id": f"n{k}", "prompt": f"When do you open on day {k}?",
                       "response_a": f"We open at {8 + k}am.", "response_b": "No idea."} for k in range(4)])
    with serving(store, AppConfig(overlap=1, gold_rate=0.0, lease_s=1800.0)) as url:
        yield {"url": url, "store": store}
    store.close()


def login(browser, server, name, width=1280, height=800):
    return login_page(browser, server["url"], name, PASSWORD, width, height)


def press(page, *keys):
    page.evaluate("document.activeElement && document.activeElement.blur()")
    for key in keys:
        page.keyboard.press(key)


def status(page, expected):
    """Wait until the status line reads `expected` ("" for nothing), and for 300 ms more that
    nothing else replaces it."""
    page.wait_for_function("(want) => document.querySelector('#annotate-status')?.innerText.trim() === want",
                           arg=expected)
    page.wait_for_timeout(300)
    assert page.locator("#annotate-status").inner_text().strip() == expected


def prompt(page):
    return page.locator("#prompt textarea").input_value()


def test_the_status_line_says_what_applies_after_each_action(browser, server):
    page = login(browser, server, "alice")
    page.locator("#progress").filter(has_text="Item 1 of 4").wait_for()
    status(page, "")
    press(page, "1")
    status(page, "")
    page.keyboard.press("Enter")
    page.locator("#progress").filter(has_text="Item 2 of 4").wait_for()
    status(page, SAVED)  # the saved item is named, and the new item's blank form keeps it
    assert page.locator("#choice input:checked").count() == 0
    page.screenshot(path=artifacts_dir() / "collect-status-after-submit.png")
    press(page, "2")  # working on the item shown: the line about the previous one goes
    status(page, "")

    press(page, "u")
    page.locator("#progress").filter(has_text="Item 1 of 4").wait_for()
    status(page, "Undone: your previous answer is filled in; change it and submit again.")
    press(page, "t")
    status(page, "")
    page.keyboard.press("Enter")
    page.locator("#progress").filter(has_text="Item 2 of 4").wait_for()
    status(page, SAVED)

    press(page, "Enter")  # no choice on this item yet
    status(page, "⚠️ Not done. Choose first: 1 better, 2 better, tie or both bad.")
    page.locator("#rate-left-quality input[value='4']").check()  # a rating is work on it too
    status(page, "")
    page.close()


def test_a_late_answer_to_an_item_another_annotator_took_is_refused_in_words(browser, server):
    store = server["store"]
    carol = login(browser, server, "carol")
    carol.locator("#progress").filter(has_text="Item 1 of").wait_for()
    left_open = prompt(carol)
    with store.write() as s:  # carol left it open for 31 minutes
        s.execute(update(Assignment).where(Assignment.annotator == "carol")
                  .values(assigned_at=Assignment.assigned_at - 31 * 60))
    dave = login(browser, server, "dave")
    dave.locator("#progress").filter(has_text="Item 1 of").wait_for()
    assert prompt(dave) == left_open  # back in the queue, and dave has it now

    press(carol, "1", "Enter")
    status(carol, "⚠️ Not saved: the item you answered went back to the queue before your answer came (after "
                  "30 min without one, or while your account was disabled), and other annotators have it now. "
                  "This is your next item.")
    assert prompt(carol) not in ("", left_open)
    assert carol.locator("#choice input:checked").count() == 0  # a blank form for the new item
    carol.screenshot(path=artifacts_dir() / "collect-status-item-taken.png")
    with store.read() as s:
        assert list(s.scalars(select(Vote).where(Vote.annotator == "carol"))) == []
    press(carol, "2")
    status(carol, "")
    dave.close()
    carol.close()
