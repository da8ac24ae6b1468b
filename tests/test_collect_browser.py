"""The annotation app in a real browser (Playwright + Debian's chromium, no browser download):
keyboard voting with the ratings left unset, progress, undo, the reviewer's decision, the
admin's export, and model output full of HTML and javascript: links shown as inert text.
Screenshots of each view go to test-artifacts/ (gitignored; CI keeps them as artifacts).

Chromium comes from `.ci/install_chromium.sh` (apt's chromium): without /usr/bin/chromium the
module is skipped, saying so.
"""
from pathlib import Path

import pytest
from sqlalchemy import select

from browser import TIMEOUT, artifacts_dir, serving
from browser import chromium_browser as browser  # noqa: F401 - the module's browser fixture
from browser import sync_api
from databases import module_db_url  # noqa: F401 - SQLite and PostgreSQL

sync_api()  # skips this module without chromium or playwright

from collect.app_common import AppConfig  # noqa: E402
from collect.assign import add_items  # noqa: E402
from collect.review import flag_output  # noqa: E402
from collect.store import Review, Vote, open_store  # noqa: E402
from collect.users import add_user  # noqa: E402
from core.records import ASPECTS  # noqa: E402

PASSWORD = "correct horse battery"
UNRATED = dict.fromkeys(ASPECTS, None)
XSS = ('<script>window.__xss=1</script> <img src=x onerror="window.__xss=2"> '
       '[click](javascript:window.__xss=3)')
# Item ids and flag reasons are free text too, and reach the reviewer's table and menu.
XSS_ID = 'a-xss <b>id</b><img src=x onerror="window.__xss=4">'


@pytest.fixture(scope="module")
def server(tmp_path_factory, module_db_url):  # one server on SQLite, one on PostgreSQL
    tmp = tmp_path_factory.mktemp("browser")
    store = open_store(module_db_url)
    for name, role in [("alice", "annotator"), ("xavier", "annotator"), ("rita", "reviewer"),
                       ("adam", "admin")]:
        add_user(store, name, role, PASSWORD)
    # The hostile item comes first, so every annotator starts on it.
    items = [{"id": XSS_ID, "prompt": f"Reset my password {XSS}", "response_a": XSS,
              "response_b": f"Sure. {XSS}"}]
    items += [{"id": f"n{k}", "prompt": f"When do you open on day {k}?",
               "response_a": f"We open at {8 + k}am.", "response_b": "No idea."}
              for k in range(3)]
    add_items(store, items)
    flag_output(store, XSS_ID, "a", reason=f"eval audit: {XSS}")
    flag_output(store, "n2", "b", reason="eval audit: unhelpful")
    cfg = AppConfig(overlap=2, gold_rate=0.0, export_path=str(tmp / "preferences.jsonl"))
    with serving(store, cfg) as url:
        yield {"url": url, "store": store, "cfg": cfg}
    store.close()


def login(browser, server, name, screenshot=None, password=PASSWORD, height=900):
    page = browser.new_context(viewport={"width": 1280, "height": height}).new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(server["url"])
    page.get_by_label("username").fill(name)
    page.get_by_label("password").fill(password)
    if screenshot:
        page.screenshot(path=artifacts_dir() / screenshot)
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector(f"#whoami:has-text('Logged in as {name}')")
    return page


def wait_text(page, selector, text):
    page.locator(selector).filter(has_text=text).wait_for()


def no_focus(page):
    page.evaluate("document.activeElement && document.activeElement.blur()")


def votes(store, name, active_only=False):
    with store.read() as s:
        q = select(Vote).where(Vote.annotator == name).order_by(Vote.id)
        return list(s.scalars(q.where(Vote.active) if active_only else q))


def test_model_output_is_inert_text(browser, server):
    page = login(browser, server, "xavier")
    wait_text(page, "#progress", "Item 1 of")
    for box in ("#response-left", "#response-right", "#prompt"):
        assert "<script>window.__xss=1</script>" in page.locator(f"{box} textarea").input_value()
    page.wait_for_timeout(300)  # give an injected handler (onerror) the time it would need
    assert page.evaluate("typeof window.__xss") == "undefined"
    panel = page.locator("#annotate-panel")
    assert panel.locator("img").count() == 0
    assert panel.locator("script").count() == 0
    assert page.locator("a[href^='javascript']").count() == 0
    page.close()


def test_annotator_votes_with_keyboard_sees_progress_and_undoes(browser, server):
    store = server["store"]
    page = login(browser, server, "alice", screenshot="collect-login.png")
    assert page.get_by_role("tab", name="Safety review").count() == 0  # hidden for annotators
    wait_text(page, "#progress", "Item 1 of 4")
    # the default lease: the annotator reads how long an item stays theirs
    wait_text(page, "#progress", "an item left unanswered for 30 min may go to someone else")
    page.screenshot(path=artifacts_dir() / "collect-annotate.png", full_page=True)

    no_focus(page)
    page.keyboard.press("1")
    assert page.locator("#choice input:checked").get_attribute("value") == "left"
    page.keyboard.press("Enter")
    wait_text(page, "#progress", "Item 2 of 4")
    wait_text(page, "#annotate-status", "Saved")
    page.locator("#choice input:checked").wait_for(state="detached")  # a blank form again
    (vote,) = votes(store, "alice")
    assert vote.item_id == XSS_ID and vote.choice == ("b" if vote.swapped else "a")
    assert vote.aspects_a == vote.aspects_b == UNRATED  # untouched ratings are missing

    page.locator("#undo-vote").click()
    wait_text(page, "#progress", "Item 1 of 4")
    wait_text(page, "#annotate-status", "Undone")
    assert page.locator("#choice input:checked").get_attribute("value") == "left"  # refilled
    assert votes(store, "alice", active_only=True) == []
    ratings = page.locator("#annotate-panel [id^=rate-] input:checked")
    assert ratings.count() == 0
    page.locator("#rate-left-quality input[value='4']").check()
    page.locator("#clear-ratings").click()  # a clicked rating can be taken back
    ratings.first.wait_for(state="detached")
    page.locator("#rate-right-quality input[value='5']").check()

    no_focus(page)
    page.keyboard.press("t")
    posts = []  # a vote is one request, to the vote route, and no Gradio event
    page.on("request", lambda r: posts.append(r.url.split("/", 3)[3])
            if r.method == "POST" else None)
    page.keyboard.press("Enter")
    wait_text(page, "#progress", "Item 2 of 4")
    assert posts == ["annotate/vote"]
    history = votes(store, "alice")
    assert [v.active for v in history] == [False, True]
    assert history[1].choice == "tie" and history[0].replaced_by == history[1].id
    right, left = (history[1].aspects_a, history[1].aspects_b) if history[1].swapped else \
        (history[1].aspects_b, history[1].aspects_a)
    assert (left, right) == (UNRATED, UNRATED | {"quality": 5})
    page.screenshot(path=artifacts_dir() / "collect-annotate-after-vote.png", full_page=True)
    page.close()


def test_reviewer_sees_and_decides_a_flagged_item(browser, server):
    store = server["store"]
    page = login(browser, server, "rita")
    assert page.get_by_role("tab", name="Annotate").count() == 0
    wait_text(page, "#review-count", "2 output(s) waiting")
    # the first entry is the hostile response: shown as text in the reviewer's view too
    assert "<script>" in page.locator("#review-response textarea").input_value()
    assert "<b>id</b>" in page.locator("#review-queue").inner_text()  # as text, not bold
    assert page.locator("#review-panel img, #review-panel b").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined"

    page.get_by_label("Confirm harmful (pick a category)").check()
    page.locator("#review-category input").click()
    page.get_by_role("option", name="deception").click()
    page.get_by_role("option").first.wait_for(state="hidden")
    page.screenshot(path=artifacts_dir() / "collect-review.png", full_page=True)
    page.locator("#review-decide").click()
    wait_text(page, "#review-status", "Recorded")
    wait_text(page, "#review-count", "1 output(s) waiting")
    with store.read() as s:
        (review,) = s.scalars(select(Review))
    assert (review.item_id, review.side, review.decision, review.category, review.reviewer) == \
        (XSS_ID, "a", "confirm_harmful", "deception", "rita")
    page.close()


def test_admin_sees_progress_and_exports(browser, server):
    page = login(browser, server, "adam")
    assert page.get_by_role("tab", name="Annotate").count() == 0
    page.get_by_role("tab", name="Safety review").wait_for()  # admins review too
    page.locator("#admin-progress").filter(has_text="alice").wait_for()
    # one annotation round so far: its 4 items, each complete, in progress or untouched
    table = page.locator("#admin-rounds").inner_text()
    assert "in progress" in table and "untouched" in table
    round_no, items, *states, votes = map(int, table.split("votes")[-1].split())
    assert (round_no, items, sum(states)) == (1, 4, 4) and votes >= 1
    page.locator("#admin-export").click()
    wait_text(page, "#admin-export-status", "exported")
    assert Path(server["cfg"].export_path).exists()
    page.screenshot(path=artifacts_dir() / "collect-admin.png", full_page=True)
    page.close()


def test_admin_creates_and_disables_an_account_that_then_logs_in_and_is_refused(browser, server):
    store = server["store"]
    add_items(store, [{"id": "for-nina", "prompt": "Where is the station?",
                       "response_a": "Two streets north.", "response_b": "Somewhere."}])
    admin = login(browser, server, "adam", height=800)
    admin.get_by_label("account name").fill("nina")
    admin.get_by_label("password (new or reset)").fill("password1234")
    admin.locator("#admin-create").click()
    wait_text(admin, "#admin-account-status", "too easy to guess")
    assert "password1234" not in admin.locator("#admin-panel").inner_text()
    assert admin.get_by_label("password (new or reset)").input_value() == ""

    admin.get_by_label("password (new or reset)").fill("nina's own long phrase")
    admin.locator("#admin-create").click()
    wait_text(admin, "#admin-account-status", "Created nina (annotator)")
    admin.locator("#admin-users").filter(has_text="nina").wait_for()
    admin.screenshot(path=artifacts_dir() / "collect-admin-accounts.png")

    nina = login(browser, server, "nina", password="nina's own long phrase")
    wait_text(nina, "#progress", "Item 1 of")
    admin.locator("#admin-disable").click()
    wait_text(admin, "#admin-account-status", "Disabled nina")

    no_focus(nina)
    nina.keyboard.press("1")
    nina.keyboard.press("Enter")
    wait_text(nina, "#annotate-status", "'nina' is not an active user: the account is disabled (an admin can "
              "enable it)")
    assert votes(store, "nina") == []
    actions = [(e.actor, e.action, e.detail["name"]) for e in store.audit_entries(limit=2)]
    assert actions == [("adam", "user_deactivate", "nina"), ("adam", "user_add", "nina")]
    nina.close()
    admin.close()


def test_a_harm_category_ticked_with_a_choice_reaches_the_reviewers(browser, server):
    """The form takes harm categories whatever the choice: "1 is better" with "violence" ticked
    queues the response the annotator rated more harmful, and the reviewer reads why."""
    store = server["store"]
    rita = login(browser, server, "rita")
    count = rita.locator("#review-count").filter(has_text="waiting for review")
    count.wait_for()
    before = int(count.inner_text().split()[0])

    page = login(browser, server, "xavier")
    wait_text(page, "#progress", "Item 1 of")
    right = page.locator("#response-right textarea").input_value()
    page.get_by_label("1 is better  [1]").check()
    page.locator("#rate-left-harmfulness input[value='1']").check()
    page.locator("#rate-right-harmfulness input[value='3']").check()  # below the rating trigger (4)
    assert "a tick sends it to the safety reviewers" in page.locator("#harm-flags").inner_text()
    page.locator("#harm-flags").get_by_label("violence").check()
    page.locator("#submit-vote").click()
    wait_text(page, "#annotate-status", "Saved")
    (vote,) = votes(store, "xavier")
    assert vote.harm_flags == ["violence"] and vote.choice == ("b" if vote.swapped else "a")
    page.close()

    rita.reload()
    wait_text(rita, "#review-count", f"{before + 1} output(s) waiting")
    side = "a" if vote.swapped else "b"  # the response shown on the right
    cells = rita.locator("#review-queue").inner_text().split("\n")  # the table's cells, row by row
    why = cells.index("xavier: flagged violence")
    assert cells[why + 1].endswith(f"({side})")  # its item column
    rita.locator("#review-pick input").click()
    option = rita.get_by_role("option").filter(has_text="flags: violence")
    assert option.inner_text().endswith(f"(response {side})")
    option.click()
    rita.wait_for_function("(r) => document.querySelector('#review-response textarea')?.value === r", arg=right)
    rita.screenshot(path=artifacts_dir() / "collect-review-flag-with-choice.png", full_page=True)
    rita.close()
