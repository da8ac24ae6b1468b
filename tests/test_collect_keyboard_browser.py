"""Keyboard-first annotation in a real browser: a fully rated item (the choice and all 14
ratings) by keys alone, counted; the key map, the progress bar, the guidelines open on the
first visit only, and the page at 1280x800 and at a phone's 390 px width. Screenshots go to
artifacts_dir() ($RLHF_TEST_ARTIFACTS, else test-artifacts/).
"""

import pytest
from sqlalchemy import select

from browser import artifacts_dir, login_page, serving
from browser import chromium_browser as browser  # noqa: F401 - the module's browser fixture
from browser import sync_api

sync_api()  # skips this module without chromium or playwright

from collect.app_common import AppConfig  # noqa: E402
from collect.assign import add_items  # noqa: E402
from collect.store import Vote, open_store  # noqa: E402
from collect.users import add_user  # noqa: E402
from core.records import ASPECTS  # noqa: E402

PASSWORD = "correct horse battery"
GUIDELINES = "**Round 7.** Prefer the response that cites the opening hours."
# The ratings typed, in the page's order: each aspect's Response 1, then its Response 2.
LEFT = dict(zip(ASPECTS, [5, 4, 5, 1, 5, 4, 5]))
RIGHT = dict(zip(ASPECTS, [2, 3, 1, 2, 2, 3, 1]))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keyboard")
    guidelines = tmp / "round7.md"
    guidelines.write_text(GUIDELINES, encoding="utf-8")
    store = open_store(tmp / "annotations.db")
    for name in ("kim", "lee"):
        add_user(store, name, "annotator", PASSWORD)
    add_items(store, [{"id": f"n{k}", "prompt": f"When do you open on day {k}?",
                       "response_a": f"We open at {8 + k}am and close at 6pm.",
                       "response_b": "No idea."} for k in range(3)])
    cfg = AppConfig(overlap=2, gold_rate=0.0, guidelines=guidelines.read_text(encoding="utf-8"))
    with serving(store, cfg) as url:
        yield {"url": url, "store": store}
    store.close()


def login(browser, server, name, width=1280, height=800):
    return login_page(browser, server["url"], name, PASSWORD, width, height)


def wait_text(page, selector, text):
    page.locator(selector).filter(has_text=text).wait_for()


def checked(page, selector):
    box = page.locator(f"{selector} input:checked")
    return box.get_attribute("value") if box.count() else None


def in_view(page, selector):
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    return (box["y"] >= 0 and box["y"] + box["height"] <= size["height"]
            and box["x"] + box["width"] <= size["width"])


def ratings_fit(page):
    """Every rating cell shows all five buttons, none cut off."""
    return page.evaluate("[...document.querySelectorAll('#ratings .rate-cell')]"
                         ".every((c) => c.scrollWidth <= c.clientWidth)")


def test_fully_rated_item_by_keyboard_only(browser, server):
    store = server["store"]
    page = login(browser, server, "kim")
    wait_text(page, "#progress", "Item 1 of 3")
    assert page.locator("#progress progress").get_attribute("value") == "0"
    assert page.locator("#progress progress").get_attribute("max") == "3"
    # first visit: this round's guidelines are open
    page.get_by_text("Prefer the response that cites the opening hours").wait_for()
    assert "Keys:" in page.locator("#key-map").inner_text()
    # one Tab stop per rating cell, not one per button
    page.wait_for_function("document.querySelectorAll('#ratings input[tabindex=\"0\"]')"
                           ".length === 14")
    assert page.locator("#ratings input").count() == 70
    assert "Higher = more harmful" in page.locator("#rate-row-harmfulness").inner_text()
    page.screenshot(path=artifacts_dir() / "collect-keyboard-first-visit.png", full_page=True)

    keys = ["1"] + [str(r) for a in ASPECTS for r in (LEFT[a], RIGHT[a])] + ["Enter"]
    page.evaluate("document.activeElement && document.activeElement.blur()")
    for n, key in enumerate(keys):
        page.keyboard.press(key)
        if n == 0:  # the choice is made and focus is on the first rating
            assert checked(page, "#choice") == "left"
            assert page.evaluate("document.activeElement.closest('.rate-cell').id") == \
                "rate-left-quality"
        elif n == len(keys) - 2:  # every rating given; "2" and "1" rated, never chose
            assert checked(page, "#choice") == "left"
            for a in ASPECTS:
                assert checked(page, f"#rate-left-{a}") == str(LEFT[a])
                assert checked(page, f"#rate-right-{a}") == str(RIGHT[a])
            assert page.evaluate("document.activeElement.id") == "submit-vote"
    assert len(keys) == 16
    wait_text(page, "#annotate-status", "Saved your answer to the previous item; Undo [u] takes it back within 2 min.")
    wait_text(page, "#progress", "Item 2 of 3")
    # after the first vote the guidelines close, and the next item's progress line is in view
    page.get_by_text("Prefer the response that cites the opening hours").wait_for(state="hidden")
    page.wait_for_function("() => { const r = document.querySelector('#progress')?.getBoundingClientRect();"
                           " return !!r && r.top >= 0 && r.top < 40; }")
    assert page.locator("#progress progress").get_attribute("value") == "1"
    page.locator("#ratings input:checked").first.wait_for(state="detached")  # a blank form
    # nothing has focus on the new item: "2" chooses Response 2, it does not rate the first
    # cell (where focus was when Enter was pressed)
    assert page.evaluate("document.activeElement === document.body")
    page.keyboard.press("2")
    assert checked(page, "#choice") == "right" and checked(page, "#rate-left-quality") is None
    with store.read() as s:
        (vote,) = s.scalars(select(Vote).where(Vote.annotator == "kim"))
    left, right = (vote.aspects_b, vote.aspects_a) if vote.swapped else \
        (vote.aspects_a, vote.aspects_b)
    assert vote.choice == ("b" if vote.swapped else "a")
    assert (left, right) == (LEFT, RIGHT)

    # keys typed into the rationale type; they choose and submit nothing
    rationale = page.get_by_label("Rationale (optional)")
    rationale.click()
    page.keyboard.type("1tbu2")
    assert rationale.input_value() == "1tbu2"
    assert checked(page, "#choice") == "right"
    # j/k move between ratings from anywhere, the arrow keys from a rating (elsewhere they
    # scroll); left/right step a rating; Escape leaves the ratings and digits choose again
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement === document.body")
    page.keyboard.press("j")
    assert page.evaluate("document.activeElement.closest('.rate-cell').id") == "rate-left-quality"
    page.keyboard.press("ArrowDown")
    page.keyboard.press("3")
    assert checked(page, "#rate-right-quality") == "3"
    page.keyboard.press("k")  # back up one row, then step its rating up
    page.keyboard.press("ArrowRight")
    assert checked(page, "#rate-right-quality") == "4"
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    assert checked(page, "#choice") == "both_bad"

    # u takes the vote back: the first item again with its answer filled in
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("u")
    wait_text(page, "#annotate-status", "Undone: your previous answer is filled in")
    wait_text(page, "#progress", "Item 1 of 3")
    assert checked(page, "#choice") == "left"
    assert checked(page, "#rate-right-helpfulness") == str(RIGHT["helpfulness"])
    page.keyboard.press("Enter")
    wait_text(page, "#annotate-status", "Saved")
    page.close()


def test_page_fits_1280x800_and_a_phone(browser, server):
    page = login(browser, server, "lee")
    wait_text(page, "#progress", "Item 1 of 3")
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("t")
    page.keyboard.press("Enter")
    wait_text(page, "#progress", "Item 2 of 3")
    page.reload()  # a later visit: the guidelines are collapsed
    wait_text(page, "#progress", "Item 2 of 3")
    page.get_by_role("button", name="Guidelines").wait_for()
    assert not page.get_by_text("Prefer the response that cites the opening hours").is_visible()
    for box in ("#prompt", "#response-left", "#response-right", "#choice", "#progress",
                "#key-map"):
        assert in_view(page, box), box
    assert ratings_fit(page)
    page.screenshot(path=artifacts_dir() / "collect-keyboard-1280x800.png")
    page.close()

    phone = login(browser, server, "lee", width=390, height=844)
    wait_text(phone, "#progress", "Item 2 of 3")
    assert phone.evaluate("document.scrollingElement.scrollWidth") <= 390  # no sideways scroll
    # the responses one above the other, each the page's width (side by side: ~15 characters a line)
    left, right = (phone.locator(f"#response-{side}").bounding_box() for side in ("left", "right"))
    assert right["y"] >= left["y"] + left["height"] - 1 and min(left["width"], right["width"]) > 300
    assert ratings_fit(phone)
    for a in ASPECTS:
        for side in ("left", "right"):
            cell = phone.locator(f"#rate-{side}-{a}").bounding_box()
            assert cell["x"] >= 0 and cell["x"] + cell["width"] <= 390, (side, a)
    phone.locator("#rate-left-realism input[value='4']").check()
    assert checked(phone, "#rate-left-realism") == "4"
    phone.screenshot(path=artifacts_dir() / "collect-keyboard-390.png", full_page=True)
    phone.close()


def test_all_done_shows_no_form_until_undo_and_a_new_round_opens_its_guidelines(browser, server):
    """With nothing left, the page says so and shows no form to fill in (only Undo); Undo
    brings the last item and the form back. Items of a new annotation round open the
    guidelines again, though the annotator voted in the round before."""
    store = server["store"]
    add_user(store, "max", "annotator", PASSWORD)
    page = login(browser, server, "max")
    wait_text(page, "#progress", "Item 1 of")
    for _ in range(4):
        if page.locator("#progress .all-done").count():
            break
        page.evaluate("document.activeElement && document.activeElement.blur()")
        page.keyboard.press("b")
        page.keyboard.press("Enter")
        wait_text(page, "#annotate-status", "Saved")
        page.wait_for_function("document.querySelector('#progress')?.innerText.includes('All done') || "
                               "document.querySelector('#ratings input:checked') === null")
    wait_text(page, "#progress", "All done")
    for box in ("#choice", "#ratings", "#submit-vote", "#prompt", "#rationale"):
        assert not page.locator(box).is_visible(), box
    assert page.locator("#undo-vote").is_visible()
    # and no empty frames where the form was: the panel ends with the Undo row
    gap = page.evaluate("document.querySelector('#undo-vote').getBoundingClientRect().top"
                        " - document.querySelector('#progress').getBoundingClientRect().bottom")
    assert gap < 40, gap
    page.screenshot(path=artifacts_dir() / "collect-all-done.png", full_page=True)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("u")
    wait_text(page, "#annotate-status", "Undone")
    page.locator("#choice").wait_for(state="visible")
    assert checked(page, "#choice") == "both_bad" and page.locator("#submit-vote").is_visible()
    page.keyboard.press("Enter")
    wait_text(page, "#progress", "All done")

    add_items(store, [{"id": "r2", "prompt": "Round two: is the shop open on Sunday?", "round": 2,
                       "response_a": "Yes, 10am-4pm.", "response_b": "No."}])
    page.reload()
    wait_text(page, "#progress", "Item")
    page.get_by_text("Prefer the response that cites the opening hours").wait_for()  # open again
    page.close()
