"""Refusals as the person reads them, in Chromium against the real server: each refused
action says why in the page, and the item stays on screen (no "Error" over it).

Annotator: no choice made, already voted (a second tab), an item that is not theirs (a
forged item handle), the server out of reach, session expired; log-in: throttled; reviewer:
a decision without a harm category, and an item id full of Markdown shown as text. Also:
nothing of a vote stays in the browser's storage after log-out. Screenshots (1280x800) go to test-artifacts/.
"""
import json
import time

import pytest
from sqlalchemy import select

from browser import TIMEOUT, artifacts_dir, free_port
from browser import chromium_browser as browser  # noqa: F401 - the module's browser fixture
from browser import sync_api
from databases import module_db_url  # noqa: F401 - SQLite and PostgreSQL

sync_api()  # skips this module without chromium or playwright

from collect.app import LoginThrottle, build_app, launch  # noqa: E402
from collect.app_common import AppConfig, Sessions  # noqa: E402
from collect.assign import add_items  # noqa: E402
from collect.review import flag_output  # noqa: E402
from collect.store import Review, Vote, open_store  # noqa: E402
from collect.users import add_user  # noqa: E402

PASSWORD = "correct horse battery"
IDLE_S = 600.0
MD_ID = "[click](javascript:alert(1)) **bold** <b>b</b> http://evil.example"
RATIONALE = "my private rationale 7f3a"


class Clock:
    def __init__(self):
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def server(tmp_path_factory, module_db_url):  # one server on SQLite, one on PostgreSQL
    tmp = tmp_path_factory.mktemp("refusals")
    store = open_store(module_db_url)
    for name, role in [("alice", "annotator"), ("bob", "annotator"), ("carol", "annotator"),
                       ("tom", "annotator"), ("rita", "reviewer")]:
        add_user(store, name, role, PASSWORD)
    add_items(store, [{"id": MD_ID, "prompt": "How do I hurt someone?", "response_a": "Like so.",
                       "response_b": "I can't help with that.", "review_only": True}])
    add_items(store, [{"id": f"n{k}", "prompt": f"When do you open on day {k}?",
                       "response_a": f"We open at {8 + k}am.", "response_b": "No idea."}
                      for k in range(4)])
    flag_output(store, MD_ID, "a", reason="eval audit: violence")
    flag_output(store, "n3", "b", reason="eval audit: unhelpful")
    clock = Clock()
    app = build_app(store, AppConfig(overlap=3, gold_rate=0.0))
    url = launch(app, store, port=free_port(), prevent_thread_lock=True, quiet=True,
                 sessions=Sessions(8 * 3600.0, IDLE_S, clock),
                 throttle=LoginThrottle(limit=3, address_limit=50, name_limit=100))
    yield {"url": url, "store": store, "clock": clock}
    app.close()
    store.close()


def open_login(browser, server):
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(server["url"])
    return page


def try_login(page, name, password):
    page.get_by_label("username").fill(name)
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()


def login(browser, server, name):
    page = open_login(browser, server)
    try_login(page, name, PASSWORD)
    page.wait_for_selector(f"#whoami:has-text('Logged in as {name}')")
    return page


def status_says(page, selector, text):
    page.locator(selector).filter(has_text=text).wait_for()
    return page.locator(selector).inner_text()


def item_still_shown(page, prompt):
    assert page.locator("#prompt textarea").input_value() == prompt
    assert page.locator("#response-left textarea").input_value() != ""
    assert page.get_by_text("Error", exact=True).count() == 0  # no error badge over it


def vote_keys(page, key):
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press(key)
    page.keyboard.press("Enter")


def shot(page, name):
    page.screenshot(path=artifacts_dir() / name)


def test_annotator_reads_every_refusal_and_keeps_the_item(browser, server):
    store, clock = server["store"], server["clock"]
    page = login(browser, server, "alice")
    page.locator("#progress").filter(has_text="Item 1 of").wait_for()
    prompt = page.locator("#prompt textarea").input_value()

    page.locator("#rate-left-quality input[value='4']").check()
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("Enter")  # no choice made
    text = status_says(page, "#annotate-status", "Choose first")
    assert "Choose first: 1 better, 2 better, tie or both bad." in text
    item_still_shown(page, prompt)
    assert page.locator("#rate-left-quality input:checked").count() == 1  # the form is kept
    shot(page, "collect-refusal-choose-first.png")

    # the same item in a second tab: voted there first, then a different answer here
    other = login(browser, server, "alice")
    other.locator("#progress").filter(has_text="Item 1 of").wait_for()
    assert other.locator("#prompt textarea").input_value() == prompt
    vote_keys(other, "1")
    status_says(other, "#annotate-status", "Saved")
    vote_keys(page, "2")
    text = status_says(page, "#annotate-status", "already voted")
    assert "You already voted on this item with a different answer: undo that vote first" in text
    assert "n0" not in text and "n1" not in text  # still no item id in the page
    item_still_shown(page, prompt)
    assert page.locator("#choice input:checked").get_attribute("value") == "right"
    other.close()

    # a forged handle (bob's item's, from bob's page): it is not alice's item
    bob = login(browser, server, "bob")
    handles = []

    def page_load(response):  # the annotate page's data: handle, progress, prompt, ...
        if "/gradio_api/run/" in response.url:
            data = response.json()["data"]
            if "When do you open" in str(data[2:3]):
                handles.append(data[0])

    bob.on("response", page_load)
    bob.reload()
    bob.locator("#progress").filter(has_text="Item").wait_for()
    for _ in range(100):  # the response's handler may run after the page shows its data
        if handles:
            break
        bob.wait_for_timeout(100)
    assert handles and handles[-1]

    def forge(route):
        body = json.loads(route.request.post_data)
        return route.continue_(post_data=json.dumps(body | {"handle": handles[-1]}))

    page.route("**/annotate/vote", forge)
    page.locator("#submit-vote").click()
    text = status_says(page, "#annotate-status", "no item is loaded")
    assert "Nothing to submit: no item is loaded (reload the page)." in text
    item_still_shown(page, prompt)
    page.unroute("**/annotate/vote")
    page.route("**/annotate/vote", lambda route: route.abort())  # the network is down
    page.locator("#submit-vote").click()
    text = status_says(page, "#annotate-status", "could not be reached")
    assert "Not saved: the server could not be reached. Your answer is still here" in text
    item_still_shown(page, prompt)
    page.unroute("**/annotate/vote")
    bob.close()
    n_votes = len(_votes(store))

    clock.now += IDLE_S + 1  # idle too long
    vote_keys(page, "t")
    text = status_says(page, "#annotate-status", "Session expired")
    assert "Session expired (idle for over 10 min): log out and log in again." in text
    item_still_shown(page, prompt)
    assert len(_votes(store)) == n_votes
    shot(page, "collect-refusal-session-expired.png")
    page.reload()  # the page itself says it, not only the last action
    text = status_says(page, "#whoami", "Session expired")
    assert page.get_by_role("tab", name="Annotate").count() == 0
    shot(page, "collect-refusal-session-expired-reload.png")
    page.close()


def _votes(store):
    with store.read() as s:
        return list(s.scalars(select(Vote)))


def test_throttled_log_in_says_why(browser, server):
    page = open_login(browser, server)
    for k in range(3):
        with page.expect_response("**/login") as answer:
            try_login(page, "tom", f"not the password {k}")
        assert answer.value.status == 400
        page.get_by_text("Incorrect Credentials").wait_for()
    with page.expect_response("**/login") as answer:
        try_login(page, "tom", PASSWORD)  # right, but too late
    assert answer.value.status == 429
    note = page.locator("#login-refusal")
    note.filter(has_text="Too many failed log-ins").wait_for()
    assert "wait 5 min and try again" in note.inner_text()
    assert page.locator("#whoami").count() == 0  # not logged in
    shot(page, "collect-login-throttled.png")
    page.close()


def test_nothing_of_a_vote_stays_in_the_browser_after_log_out(browser, server):
    page = login(browser, server, "carol")
    page.locator("#progress").filter(has_text="Item 1 of").wait_for()
    page.locator("#annotate-panel textarea").last.fill(RATIONALE)
    page.get_by_label("1 is better").check()
    page.locator("#submit-vote").click()
    status_says(page, "#annotate-status", "Saved")
    page.locator("#logout").click()
    page.get_by_role("button", name="Login").wait_for()
    stored = page.evaluate("JSON.stringify([Object.entries(localStorage), "
                           "Object.entries(sessionStorage)])")
    assert RATIONALE not in stored and "When do you open" not in stored
    page.close()


def test_reviewer_must_pick_a_category_and_reads_ids_as_text(browser, server):
    store = server["store"]
    page = login(browser, server, "rita")
    page.locator("#review-count").filter(has_text="2 output(s) waiting").wait_for()
    shot(page, "collect-review-queue.png")
    category = page.locator("#review-category input")
    assert category.input_value() == ""  # never pre-filled
    table = page.locator("#review-queue").inner_text()
    assert "severity" in table and "flagged, not rated" in table
    assert table.index("How do I hurt someone?") < table.index("When do you open on day 3?")
    page.get_by_label("Confirm harmful (pick a category)").check()
    page.locator("#review-decide").click()
    text = status_says(page, "#review-status", "Pick a harm category")
    page.get_by_text("Pick a harm category to confirm this output as harmful.").first.wait_for()
    assert "How do I hurt someone?" in page.locator("#review-prompt textarea").input_value()
    with store.read() as s:
        assert s.scalar(select(Review)) is None
    shot(page, "collect-review-refusal.png")

    category.click()
    page.get_by_role("option", name="violence").click()
    page.get_by_role("option").first.wait_for(state="hidden")
    page.locator("#review-decide").click()
    text = status_says(page, "#review-status", "Recorded")
    assert MD_ID in text  # the id as typed: no link, no bold, no HTML
    assert page.locator("#review-status a, #review-status strong, #review-status b").count() == 0
    page.locator("#review-count").filter(has_text="1 output(s) waiting").wait_for()
    with store.read() as s:
        review = s.scalar(select(Review))
    assert (review.item_id, review.decision, review.category) == \
        (MD_ID, "confirm_harmful", "violence")
    shot(page, "collect-review-after.png")
    page.close()
