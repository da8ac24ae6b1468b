"""The annotation app's security, through the real server over HTTP (not only the functions):
who may log in, who may call which handler, and that no crafted request reads or votes on an
item that is not the caller's.

One server per module on 127.0.0.1 and a free port; clients are gradio_client (what a script
would use) and raw httpx requests shaped like the browser's (/gradio_api/queue/join with every
input, hidden session state included, so the crafted values reach the server; votes as the
page's Submit posts them to the vote route).

The server's tests run twice: on a SQLite store and on a PostgreSQL one (a fresh schema;
tests/databases.py skips those without a server, and fails them under CI).
"""
import asyncio
import html
import inspect
import json
import re
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from sqlalchemy import func, select

from browser import free_port

import collect.app
from collect.app import DEFAULT_HOST, LoginThrottle, build_app, launch, make_auth, serve
from collect.app_http import CLIENT_ADDRESS, Throttled
from collect.app_common import AppConfig, Sessions
from collect.app_vote import ItemHandles
from collect.assign import add_items
from collect.store import Assignment, Review, Vote, open_store
from collect.users import activate, add_user, deactivate, list_users, reset_password
from core.records import ASPECTS
from databases import module_db_url as store_location  # noqa: F401 - one server per database

PASSWORD = "correct horse battery"
CROSS_SITE_REFUSAL = "Refused: the request did not come from this app's page."
USERS = {"ann1": "annotator", "ann2": "annotator", "ann3": "annotator", "rev": "reviewer",
         "adm": "admin"}
RATINGS = [4] * 14
MAX_S, IDLE_S = 3600.0, 600.0  # session lifetime and idle limit of the test server


class Clock:
    """The server's session clock: it stands still until a test moves it."""

    def __init__(self):
        self.now = time.time()

    def __call__(self) -> float:
        return self.now



@pytest.fixture(scope="module")
def server(tmp_path_factory, store_location):
    tmp = tmp_path_factory.mktemp("app")
    store = open_store(store_location)
    for name, role in USERS.items():
        add_user(store, name, role, PASSWORD)
    # overlap 1: each item goes to one annotator, so "someone else's item" is well defined
    add_items(store, [{"id": f"i{k}", "prompt": f"question {k}", "response_a": f"answer {k} A",
                       "response_b": f"answer {k} B"} for k in range(12)])
    cfg = AppConfig(overlap=1, gold_rate=0.0, export_path=str(tmp / "preferences.jsonl"))
    app = build_app(store, cfg)
    clock = Clock()
    throttle = LoginThrottle(limit=3, address_limit=8, name_limit=20)
    url = launch(app, store, port=free_port(), prevent_thread_lock=True, quiet=True,
                 sessions=Sessions(MAX_S, IDLE_S, clock), throttle=throttle)
    fns = {fn.api_name: (fn._id, fn.queue) for fn in app.fns.values()}
    yield {"url": url.rstrip("/"), "store": store, "cfg": cfg, "fns": fns, "clock": clock,
           "throttle": throttle}
    app.close()
    store.close()


def client(server, name, password=PASSWORD) -> Client:
    return Client(server["url"], auth=(name, password), verbose=False, analytics_enabled=False,
                  download_files=False)


def http_client(server, address="127.0.0.1") -> httpx.Client:
    """A client connecting from `address` (any 127.x.y.z reaches the server on loopback)."""
    return httpx.Client(base_url=server["url"], timeout=20,
                        transport=httpx.HTTPTransport(local_address=address))


def http_login(server, name, password=PASSWORD) -> httpx.Client:
    http = http_client(server)
    r = http.post("/login", data={"username": name, "password": password})
    assert r.status_code == 200, r.text
    return http


def raw_call(server, http: httpx.Client, api_name: str, data: list, session_hash=None):
    """One event the way the browser sends it: every input of the event, state included (a
    plain POST for events outside the queue, else queue/join + the event stream). Returns
    the HTTP status when refused at the door, else {"success": ..., "output": ...}."""
    session_hash = session_hash or uuid.uuid4().hex[:11]
    fn_index, queued = server["fns"][api_name]
    body = {"data": data, "fn_index": fn_index, "session_hash": session_hash,
            "event_data": None, "trigger_id": None}
    if not queued:
        r = http.post(f"/gradio_api/run/{api_name}", json=body)
        if r.status_code in (401, 403, 404):
            return r.status_code
        return {"success": r.status_code == 200, "output": r.json()}
    r = http.post("/gradio_api/queue/join", json=body)
    if r.status_code != 200:
        return r.status_code
    with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session_hash}) as s:
        for line in s.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    return msg
    raise AssertionError("the event never completed")


def vote(server, who, handle, choice="left", ratings=RATINGS, headers=None, **answer
         ) -> tuple[int, str]:
    """One vote as the page's Submit posts it (collect/app_vote.py), from a gradio_client
    Client's or an httpx client's session; the HTTP status and the status line as a person
    reads it (the whole answer is in `who.last_vote`)."""
    cookies = who.cookies if isinstance(who, Client) else None
    http = who if isinstance(who, httpx.Client) else http_client(server)
    r = http.post("/annotate/vote", cookies=cookies, headers=headers,
                  json={"handle": handle, "choice": choice, "ratings": ratings, **answer})
    who.last_vote = r.json()
    return r.status_code, html.unescape(who.last_vote["status"])


def page(c: Client) -> list:
    """The annotator's page load (handle, progress, prompt, left, right, status, guidelines)."""
    return c.predict(api_name="/annotate_page")


def shown(msg) -> str:
    """The text of a raw call's outputs as a person reads it (Markdown references decoded)."""
    return html.unescape(json.dumps(msg["output"], ensure_ascii=False))


def count(store, model, *where) -> int:
    with store.read() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def assigned_to(store, name) -> set[str]:
    with store.read() as s:
        return set(s.scalars(select(Assignment.item_id).where(Assignment.annotator == name)))


def voted_by(store, name) -> set[str]:
    with store.read() as s:
        return set(s.scalars(select(Vote.item_id).where(Vote.annotator == name)))


# ------------------------------------------------------------------------ logging in


def test_a_large_body_is_refused_before_it_is_read(server):
    """Any route, logged in or not: a body over 1 MB is refused with 413 by its declared length,
    and a chunked one (no length up front) is cut off once it passes the cap; small ones pass."""
    http = http_client(server)
    big = b"[" + b"0," * 600_000 + b"0]"
    for path in ("/gradio_api/run/undo", "/annotate/vote", "/login"):
        r = http.post(path, content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["detail"] == "Refused: a request body is at most 1024 kB.", path

    def chunks():  # a valid JSON body of 4 MB, with no length up front: read only up to the cap
        yield b'{"data": ['
        for _ in range(40):
            yield b"0," * 50_000
        yield b'0]}'

    r = http.post("/gradio_api/run/undo", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 400 and "error parsing the body" in r.text
    r = http.post("/login", data={"username": "nobody", "password": "wrong password"})
    assert r.status_code == 400  # a small form still reaches the log-in


def test_serve_draws_a_secret_seed_unless_given_one(tmp_path, monkeypatch):
    """The side an annotator sees a response on and the gold mix come from the seed: with a fixed
    default, anyone with the code could work out which side an A/B item's policy is on, and which
    items are gold checks. So `collect serve` draws one at each start unless --seed names it."""
    from collect import app as app_module
    from collect.cli import main

    seeds = []
    monkeypatch.setattr(app_module, "serve", lambda run, **kw: seeds.append(kw["seed"]))
    for _ in range(3):
        assert main(["serve", "--run", str(tmp_path)]) == 0
    assert main(["serve", "--run", str(tmp_path), "--seed", "5"]) == 0
    assert len(set(seeds[:3])) == 3 and 0 not in seeds[:3] and seeds[3] == 5


def test_default_bind_is_loopback(tmp_path):
    from collect.cli import build_parser

    assert DEFAULT_HOST == "127.0.0.1"
    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    assert build_parser().parse_args(["serve", "--run", str(tmp_path)]).host == "127.0.0.1"
    app = serve(tmp_path, port=free_port(), prevent_thread_lock=True)
    try:
        assert app.server_name == "127.0.0.1"
        assert app.local_url.startswith("http://127.0.0.1:")
    finally:
        app.close()


def test_serve_opens_the_store_that_db_names(tmp_path, server, store_location):
    """`rlhf collect serve --db URL`: the app logs in the accounts of that store and leaves
    the run's default SQLite file alone."""
    app = serve(tmp_path, port=free_port(), prevent_thread_lock=True, db=store_location)
    try:
        with httpx.Client(base_url=app.local_url.rstrip("/"), timeout=20) as http:
            assert http.post("/login", data={"username": "ann1", "password": PASSWORD}
                             ).status_code == 200
            assert http.post("/login", data={"username": "ann1", "password": "wrong pass"}
                             ).status_code != 200
    finally:
        app.close()
    assert not (tmp_path / "collect" / "annotations.db").exists()


def test_serve_shows_the_rounds_guidelines_from_the_run(tmp_path, server, store_location):
    """Without --guidelines, `collect serve` shows <run>/collect/guidelines.md (the demo writes
    its own there); --guidelines still wins."""
    (tmp_path / "collect").mkdir()
    (tmp_path / "collect" / "guidelines.md").write_text("Round 2: judge the *walnut* answers.",
                                                        encoding="utf-8")
    other = tmp_path / "other.md"
    other.write_text("Other round's guidelines.", encoding="utf-8")
    for flag, expected, absent in ((None, "Round 2: judge the", "Other round"),
                                   (other, "Other round", "Round 2")):
        app = serve(tmp_path, port=free_port(), prevent_thread_lock=True, db=store_location,
                    guidelines=flag)
        try:
            with httpx.Client(base_url=app.local_url.rstrip("/"), timeout=20) as http:
                http.post("/login", data={"username": "ann1", "password": PASSWORD})
                config = http.get("/config").text
        finally:
            app.close()
        assert expected in config and absent not in config


def test_unauthenticated_client_can_call_nothing(server):
    http = httpx.Client(base_url=server["url"], timeout=20)
    assert http.get("/config").status_code == 401
    assert http.get("/gradio_api/info").status_code == 401
    assert http.post("/gradio_api/call/annotate_page", json={"data": []}).status_code == 401
    for api_name in ("undo", "annotate_page", "review_decide", "admin_export"):
        assert raw_call(server, http, api_name, [None] * 20) == 401
    handle = page(client(server, "ann1"))[0]
    code, status = vote(server, http, handle)  # the vote route checks the session itself
    assert code == 401 and "Not logged in" in status
    with pytest.raises(Exception):
        Client(server["url"], verbose=False, analytics_enabled=False)
    assert count(server["store"], Vote) == 0


def test_wrong_passwords_fail(server):
    http = httpx.Client(base_url=server["url"], timeout=20)
    for name, password in [("ann1", "not the password"), ("ann1", ""), ("nobody", PASSWORD),
                           ("ANN1", PASSWORD)]:
        r = http.post("/login", data={"username": name, "password": password})
        assert r.status_code in (400, 422)  # 422: the empty password fails form validation
        assert not http.cookies
    assert http.get("/config").status_code == 401
    with pytest.raises(ValueError, match="Could not login"):
        client(server, "rev", "wrong password")
    assert http_login(server, "rev").get("/config").status_code == 200


def test_login_throttle_limits_pairs_addresses_and_names():
    t = LoginThrottle(limit=3, address_limit=5, name_limit=8, window_s=60)
    for k in range(3):  # failures of one name from one address
        t.reserve("ann1", "10.0.0.1", 100.0 + k)
    with pytest.raises(Throttled, match="wait 1 min"):
        t.reserve("ann1", "10.0.0.1", 103.0)
    t.reserve("ann1", "10.0.0.2", 103.0)  # the same name from elsewhere: still checked
    t.reserve("ann2", "10.0.0.1", 103.0)
    t.reserve("ann3", "10.0.0.1", 103.0)  # 5 failures from 10.0.0.1 in all
    with pytest.raises(Throttled):  # one password across many names: stopped
        t.reserve("ann4", "10.0.0.1", 104.0)
    ok = t.reserve("ann4", "10.0.0.3", 104.0)
    t.release("ann4", "10.0.0.3", ok)  # a right password is not a failure
    for k in range(4):
        t.reserve("ann1", f"10.1.0.{k // 2}", 105.0)
    with pytest.raises(Throttled):  # 8 failures of ann1 from 4 addresses: name_limit
        t.reserve("ann1", "10.2.0.1", 106.0)
    t.reserve("ann1", "10.0.0.1", 161.0)  # the window has passed
    # ann1's name is locked by guesses from many addresses, but not for an address it logged in from
    t = LoginThrottle(limit=3, address_limit=5, name_limit=8, window_s=60)
    t.release("ann1", "10.5.0.1", t.reserve("ann1", "10.5.0.1", 200.0))
    for k in range(8):
        t.reserve("ann1", f"10.6.0.{k}", 201.0)
    with pytest.raises(Throttled):
        t.reserve("ann1", "10.7.0.1", 202.0)
    t.release("ann1", "10.5.0.1", t.reserve("ann1", "10.5.0.1", 202.0))
    for k in range(3):  # that address keeps its own limit
        t.reserve("ann1", "10.5.0.1", 203.0)
    with pytest.raises(Throttled):
        t.reserve("ann1", "10.5.0.1", 204.0)
    for k in range(8):
        t.reserve("ann2", f"10.8.0.{k}", 205.0)
    with pytest.raises(Throttled):  # an address known for ann1 is not known for ann2
        t.reserve("ann2", "10.5.0.1", 205.0)
    with pytest.raises(ValueError):  # else one address could lock out any name
        LoginThrottle(address_limit=10, name_limit=10)


def test_concurrent_guesses_are_throttled_before_the_password_check(tmp_path, monkeypatch):
    """40 guesses at once, the right password among them: the throttle's decision comes
    before the (awaited) scrypt check, so only `limit` passwords are checked at all."""
    store = open_store(tmp_path / "annotations.db")
    add_user(store, "victim", "annotator", PASSWORD)
    checked = []

    def counting_verify(store, name, password):
        checked.append(password)
        return real_verify(store, name, password)

    real_verify = collect.app.verify_user
    monkeypatch.setattr(collect.app, "verify_user", counting_verify)
    auth = make_auth(store, LoginThrottle(limit=3, address_limit=5, name_limit=8))

    async def burst():
        CLIENT_ADDRESS.set("10.9.9.9")
        guesses = [auth("victim", f"guess number {k}") for k in range(40)]
        guesses.insert(20, auth("victim", PASSWORD))
        return await asyncio.gather(*guesses, return_exceptions=True)

    results = asyncio.run(burst())
    assert len(checked) == 3 and PASSWORD not in checked
    assert results[:3] == [False] * 3 and True not in results
    assert all(getattr(r, "status_code", None) == 429 for r in results[3:])
    assert "Too many failed log-ins" in results[20].detail
    store.close()


def test_throttle_over_http_limits_an_address_and_locks_out_nobody_else(server):
    """From one address: a few guesses at ann1, then one password across many names; that
    address is refused (429, with the reason), even with a right password; ann1 and everyone
    else still log in from their own address."""
    attacker = http_client(server, "127.0.0.7")
    try:
        for name in ["ann1"] * 3 + ["ann2", "ann3", "rev", "adm", "nobody"]:
            r = attacker.post("/login", data={"username": name, "password": "Summer2026!!x"})
            assert r.status_code == 400
        for name in ("ann1", "ann3"):
            r = attacker.post("/login", data={"username": name, "password": PASSWORD})
            assert r.status_code == 429 and not attacker.cookies
            assert "Too many failed log-ins" in r.json()["detail"]
        assert http_login(server, "ann1").get("/config").status_code == 200
        assert http_login(server, "ann2").get("/config").status_code == 200
    finally:
        server["throttle"].__init__(limit=3, address_limit=8, name_limit=20)  # forget it all


def test_log_in_page_tells_nothing_about_the_api(server):
    """Gradio renders the endpoints' schema into its page; before log-in it is left out."""
    http = http_client(server)
    for path in ("/", "/?all_endpoints=true", "/?page="):
        page = http.get(path).text
        assert "window.gradio_api_info = null;" in page
        assert "/annotate_page" not in page and "review_decide" not in page \
            and "Radio" not in page
    assert http.get("/openapi.json").status_code == 404  # FastAPI's route list, also off
    page = http_login(server, "ann1").get("/").text  # after log-in the page is Gradio's own
    assert '"/annotate_page"' in page and "window.gradio_api_info = null;" not in page


def test_run_history_and_uploads_are_off(server):
    """No role needs Gradio's run history (inputs and outputs kept in the browser after
    log-out) or file uploads: both are refused."""
    http = http_login(server, "ann1")
    assert http.get("/gradio_api/runs").status_code == 404
    assert '"run_history":false' in http.get("/config").text.replace(" ", "")
    for size, refused_by in ((1, "maximum allowed size"), (30_000_000, "a request body is at most 1024 kB")):
        r = http.post("/gradio_api/upload", files={"files": ("notes.txt", b"x" * size)})
        assert r.status_code == 413 and refused_by in r.text  # Gradio's file cap, or ours before it


# ------------------------------------------------------------------------ annotators


def test_annotator_reads_and_votes_only_on_own_items(server):
    store = server["store"]
    c1, c2 = client(server, "ann1"), client(server, "ann2")
    page1, page2 = page(c1), page(c2)
    (mine1,), (mine2,) = assigned_to(store, "ann1"), assigned_to(store, "ann2")
    assert mine1 != mine2
    assert page1[2] == f"question {mine1[1:]}" and page2[2] == f"question {mine2[1:]}"
    # the browser is never told an item id: the page's data has none, and the item's handle
    # is opaque and fresh at every showing (random text, so it is left out of the search: a
    # 22-character token holds "i0" about once in 200)
    assert mine1 not in json.dumps(page1[1:]) and mine2 not in json.dumps(page2[1:])
    handle1 = page1[0]
    assert len(handle1) >= 20 and handle1 != page(c1)[0]

    # ann2 with ann1's handle, or one made up: nothing is loaded for ann2 under it
    for handle in (handle1, "i0", None, ["x"]):
        code, status = vote(server, c2, handle)
        assert code == 409 and "Nothing to submit: no item is loaded" in status, handle
        assert mine1 not in status
    assert count(store, Vote) == 0
    # ... and reading through ann1's Gradio session id gives ann2 only ann2's own item
    http2 = http_login(server, "ann2")
    msg = raw_call(server, http2, "annotate_page", [], session_hash=c1.session_hash)
    assert msg["output"]["data"][2] == f"question {mine2[1:]}"
    assert assigned_to(store, "ann2") == {mine2}

    code, status = vote(server, c1, handle1, choice=None)  # a choice is needed
    assert code == 409 and "Choose first" in status
    assert count(store, Vote) == 0
    code, status = vote(server, c1, handle1)
    assert code == 200 and status.startswith("Saved") and c1.last_vote["saved"]
    assert count(store, Vote, Vote.annotator == "ann1", Vote.item_id == mine1) == 1
    assert c1.last_vote["prompt"].startswith("question") and mine1 not in str(c1.last_vote)
    code, status = vote(server, c1, handle1, choice="right")  # a second vote on it
    assert code == 409 and "already voted on this item" in status
    assert count(store, Vote, Vote.annotator == "ann2") == 0


def test_forged_answers_are_refused_in_the_status_line(server):
    """Values no page can send, posted by hand, are refused with their reason, and nothing
    is stored; so are requests that are not the page's JSON, or that come from another
    site."""
    store = server["store"]
    add_user(store, "forger", "annotator", PASSWORD)
    c = client(server, "forger")
    handle = page(c)[0]
    forged = {
        "choice": dict(choice=["left"]), "rating": dict(ratings=["5"] + RATINGS[1:]),
        "rating range": dict(ratings=[9] + RATINGS[1:]), "ratings": dict(ratings=RATINGS[:7]),
        "flag": dict(flags=["arson"]), "flags": dict(flags="violence"),
        "rationale": dict(rationale={"a": 1})}
    reasons = {"choice": "choice", "rating": "must be a whole number 1-5",
               "rating range": "must be a whole number 1-5",
               "ratings": "ratings: must be a list of 14", "flag": "harm flag(s) ['arson']",
               "flags": "harm flags: must be a list", "rationale": "rationale: must be text"}
    for what, answer in forged.items():
        code, status = vote(server, c, handle, **answer)
        assert code == 409 and reasons[what] in status, (what, status)
    http = http_client(server)
    http.cookies.update(c.cookies)
    for request, code in [
            (dict(content=b"choice=left", headers={"content-type": "text/plain"}), 415),
            (dict(content=b"{not json", headers={"content-type": "application/json"}), 400),
            (dict(content=b"[" * 60_000, headers={"content-type": "application/json"}), 400),  # too deep
            (dict(json=["left"]), 400),
            (dict(json={"handle": handle, "choice": "left", "rationale": "x" * 70_000}), 413)]:
        r = http.post("/annotate/vote", **request)
        assert r.status_code == code and "Refused" in r.json()["status"], (request, r.text)
    r = http.post("/annotate/vote", json={"handle": handle, "choice": "left", "ratings": RATINGS},
                  headers={"origin": "https://elsewhere.example"})
    assert r.status_code == 403 and r.json()["detail"] == CROSS_SITE_REFUSAL
    assert count(store, Vote, Vote.annotator == "forger") == 0
    # a page on another port of this host that names itself in X-Forwarded-Host (a script may
    # add the header): refused; only Host counts
    for forged_host in ("127.0.0.1:8799", "annotate.example"):
        r = http.post("/annotate/vote", json={"handle": handle, "choice": "left", "ratings": RATINGS},
                      headers={"origin": "http://127.0.0.1:8799", "x-forwarded-host": forged_host})
        assert r.status_code == 403 and r.json()["detail"] == CROSS_SITE_REFUSAL, (forged_host, r.text)
    # the app's own page behind a reverse proxy that passes the public host as Host
    code, status = vote(server, c, handle, flags=["fraud"], rationale="  fine  ",
                        headers={"origin": "https://annotate.example", "host": "annotate.example"})
    assert code == 200 and "Saved" in status
    with store.read() as s:
        stored = s.scalar(select(Vote).where(Vote.annotator == "forger"))
    assert stored.harm_flags == ["fraud"] and stored.rationale == "fine"


def test_vote_without_ratings_is_stored_as_missing(server):
    """Choice + Enter with every rating left unset: the vote goes in, its ratings as None."""
    store = server["store"]
    c = client(server, "ann2")
    handle = page(c)[0]
    (mine,) = assigned_to(store, "ann2") - voted_by(store, "ann2")
    assert vote(server, c, handle, choice="right", ratings=[None] * 14)[1].startswith("Saved")
    with store.read() as s:
        stored = s.scalar(select(Vote).where(Vote.annotator == "ann2", Vote.item_id == mine))
    assert stored.aspects_a == stored.aspects_b == dict.fromkeys(ASPECTS, None)


def test_annotator_cannot_reach_reviewer_or_admin_handlers(server):
    store, fns = server["store"], server["fns"]
    c = client(server, "ann3")
    key = json.dumps(["i0", "a"])
    calls = [("/review_queue", ()), ("/review_show", (key,)),
             ("/review_decide", (key, "confirm_harmful", "violence", "")),
             ("/admin_refresh", ()), ("/admin_export", (0.0,))]
    for api_name, args in calls:
        with pytest.raises(AppError, match="Not allowed"):
            c.predict(*args, api_name=api_name)
    # the same through raw requests, past the dropdown's choice check
    http = http_login(server, "ann3")
    for api_name, data in [("review_decide", [key, "dismiss", None, ""]), ("admin_export", [0.0]),
                           ("admin_refresh", [])]:
        msg = raw_call(server, http, api_name, data)
        assert not msg["success"] and "Not allowed" in json.dumps(msg["output"])
    # the page-load steps of other roles hand an annotator nothing
    for api_name in ("review_page", "admin_page"):
        msg = raw_call(server, http, api_name, [])
        text = json.dumps(msg["output"])
        assert "i0" not in text and "adm" not in text and "question" not in text
    assert count(store, Review) == 0
    assert not Path(server["cfg"].export_path).exists()
    assert "review_decide" in fns  # the handlers exist: the refusals above are real


def test_roles_reach_their_own_handlers(server):
    """Positive controls: the refusals above are role checks, not broken endpoints."""
    store = server["store"]
    r = client(server, "rev")
    with pytest.raises(AppError, match="Not allowed"):
        r.predict(api_name="/admin_refresh")
    code, refusal = vote(server, r, page(client(server, "ann1"))[0])  # reviewers do not annotate
    assert code == 403 and "Not allowed" in refusal and "is a reviewer" in refusal
    queue = r.predict(api_name="/review_queue")
    assert "waiting for review" in queue[0] or "empty" in queue[0]
    a = client(server, "adm")
    assert "regular items" in a.predict(api_name="/admin_refresh")[0]
    assert "pairs" in a.predict(0.0, api_name="/admin_export")
    assert Path(server["cfg"].export_path).exists()
    assert count(store, Review) == 0


def test_deactivated_user_loses_access_in_an_open_session(server):
    store = server["store"]
    c = client(server, "ann3")
    handle = page(c)[0]
    deactivate(store, "ann3")
    code, refusal = vote(server, c, handle)
    assert code == 403 and "not an active user" in refusal
    with pytest.raises(ValueError):
        client(server, "ann3")
    assert count(store, Vote, Vote.annotator == "ann3") == 0


ACCOUNT_CALLS = [("admin_user_add", ["mallory", "admin", "a long enough phrase"]),
                 ("admin_user_disable", ["adm"]), ("admin_user_enable", ["ann3"]),
                 ("admin_user_reset", ["adm", "a long enough phrase"]),
                 ("admin_user_role", ["ann1", "admin"])]


def forget_failed_logins(server):
    """The failed log-ins below are deliberate: they must not throttle the later ones."""
    server["throttle"].__init__(limit=3, address_limit=8, name_limit=20)


def test_only_an_admin_manages_accounts_over_http(server):
    store = server["store"]
    forget_failed_logins(server)
    before = len(store.audit_entries())
    for name in ("ann1", "rev"):
        c = client(server, name)
        http = http_login(server, name)
        for api_name, data in ACCOUNT_CALLS:
            with pytest.raises(AppError, match="Not allowed"):
                c.predict(*data, api_name=f"/{api_name}")
            msg = raw_call(server, http, api_name, data)
            assert not msg["success"] and "Not allowed" in json.dumps(msg["output"])
    assert len(store.audit_entries()) == before
    with pytest.raises(ValueError):  # nobody was created, and adm's password is unchanged
        client(server, "mallory", "a long enough phrase")
    client(server, "adm").predict(api_name="/admin_refresh")


def test_admin_creates_disables_enables_and_resets_an_account_over_http(server):
    store = server["store"]
    forget_failed_logins(server)
    a = client(server, "adm")
    weak = a.predict("carol", "annotator", "password1234", api_name="/admin_user_add")
    assert "too easy to guess" in html.unescape(weak[0]) and "password1234" not in weak[0]
    with pytest.raises(ValueError):
        client(server, "carol", "password1234")
    done = a.predict("carol", "annotator", "carol's long phrase", api_name="/admin_user_add")
    assert "Created" in done[0] and "carol" in done[0] and done[2] == ""
    assert ["carol", "annotator", True] in [row[:3] for row in done[1]["data"]]
    carol = client(server, "carol", "carol's long phrase")
    carol_page = page(carol)
    assert "Item" in json.dumps(carol_page)
    a.predict("carol", api_name="/admin_user_disable")
    assert "not an active user" in vote(server, carol, carol_page[0])[1]
    with pytest.raises(ValueError):
        client(server, "carol", "carol's long phrase")
    assert "cannot disable their own" in html.unescape(
        a.predict("adm", api_name="/admin_user_disable")[0])
    a.predict("carol", api_name="/admin_user_enable")
    a.predict("carol", "carol's new phrase", api_name="/admin_user_reset")
    with pytest.raises(ValueError):
        client(server, "carol", "carol's long phrase")
    forget_failed_logins(server)
    client(server, "carol", "carol's new phrase").predict(api_name="/annotate_page")
    # a new role takes effect in open sessions: carol the reviewer can no longer vote
    done = a.predict("carol", "reviewer", api_name="/admin_user_role")
    assert "is now reviewer" in html.unescape(done[0])
    assert ["carol", "reviewer", True] in [row[:3] for row in done[1]["data"]]
    assert "Not allowed" in vote(server, carol, carol_page[0])[1]
    assert "cannot take away their own admin role" in html.unescape(
        a.predict("adm", "annotator", api_name="/admin_user_role")[0])
    rows = [(e.actor, e.action, e.detail.get("name")) for e in store.audit_entries(limit=5)]
    assert rows == [("adm", "user_set_role", "carol"),
                    ("adm", "user_reset_password", "carol"), ("adm", "user_activate", "carol"),
                    ("adm", "user_deactivate", "carol"), ("adm", "user_add", "carol")]
    assert store.audit_entries(limit=1)[0].detail["new"] == {"role": "reviewer"}
    assert "phrase" not in json.dumps([e.detail for e in store.audit_entries()])


def test_another_sites_page_cannot_act_in_an_admins_session(server):
    """Cross-site request forgery: an admin's logged-in browser, sent by a page on another site
    to the account, export and review handlers, behind a proxy that names the public host. Each
    is refused before it runs; the same calls from the app's own page go through."""
    store = server["store"]
    forget_failed_logins(server)
    http = http_login(server, "adm")
    cookie = next(v for k, v in http.cookies.items() if k.startswith("access-token-unsecure"))
    before = len(store.audit_entries())
    public = {"host": "annotate.example.org"}
    fn_index, _ = server["fns"]["admin_user_add"]
    body = {"data": ["mallory", "admin", "a long enough phrase"], "fn_index": fn_index,
            "session_hash": "csrf", "event_data": None, "trigger_id": None}
    for origin in ("https://evil.example", "null", "http://127.0.0.1.evil.example"):
        r = http.post("/gradio_api/queue/join", json=body, headers={**public, "origin": origin})
        assert r.status_code == 403 and "did not come from this app's page" in r.text, (origin, r.text)
        # naming its own host in X-Forwarded-Host does not help it
        r = http.post("/gradio_api/queue/join", json=body,
                      headers={**public, "origin": origin, "x-forwarded-host": urlsplit(origin).netloc or "null"})
        assert r.status_code == 403 and "did not come from this app's page" in r.text, (origin, r.text)
        r = http.post("/gradio_api/run/undo", json={**body, "data": []},
                      headers={**public, "origin": origin})
        assert r.status_code == 403
    assert len(store.audit_entries()) == before and "mallory" not in [u.name for u in list_users(store)]
    # the app's own page (the origin the proxy names) is served
    r = http.post("/gradio_api/queue/join", json={**body, "data": ["mallory", "annotator", "a long enough phrase"]},
                  headers={**public, "origin": "https://annotate.example.org"})
    assert r.status_code == 200, r.text
    # a link or an image on another site (or another port of this host) cannot log the admin out
    for site in ("cross-site", "same-site"):
        r = http.get("/logout", headers={"sec-fetch-site": site}, follow_redirects=False)
        assert r.status_code == 403 and "did not come from this app's page" in r.text, site
    assert http.get("/gradio_api/info").status_code == 200  # still logged in
    # Gradio's traffic monitor (every user's calls) is off, for any log-in
    for path in ("/monitoring", "/monitoring/summary"):
        r = http.get(path)
        assert r.status_code == 403 and r.json()["detail"] == "Monitoring is not enabled.", path
    # and the session cookies go out SameSite=Lax, never None
    r = http_client(server).post("/login", data={"username": "adm", "password": PASSWORD})
    cookies = r.headers.get_list("set-cookie")
    assert len(cookies) == 2 and all("samesite=lax" in c.lower() for c in cookies), cookies
    assert cookie


def test_password_reset_and_disabling_end_open_sessions(server):
    """Sessions opened before a password reset, or before the account was disabled, are over
    (also after it is enabled again), in the vote route and in every handler; a log-in after it
    works."""
    store = server["store"]
    forget_failed_logins(server)
    add_user(store, "erin", "annotator", "erin's long phrase")
    old = client(server, "erin", "erin's long phrase")
    handle = page(old)[0]
    reset_password(store, "erin", "erin's second phrase")
    code, refusal = vote(server, old, handle)
    assert code == 403 and "this log-in ended when the password was reset" in refusal
    assert "log in again" in html.unescape(json.dumps(old.predict(api_name="/undo"), ensure_ascii=False))
    assert "log in again" in html.unescape(json.dumps(old.predict(api_name="/whoami")))
    new = client(server, "erin", "erin's second phrase")
    code, status = vote(server, new, page(new)[0])
    assert code == 200 and status.startswith("Saved")

    deactivate(store, "erin")
    activate(store, "erin")
    code, refusal = vote(server, new, page(client(server, "ann1"))[0])
    assert code == 403 and "log in again" in refusal
    third = client(server, "erin", "erin's second phrase")
    assert "Item" in json.dumps(page(third))
    assert count(store, Vote, Vote.annotator == "erin") == 1


# --------------------------------------------------------------------- session expiry


def test_session_expires_when_idle(server):
    """Each call restarts the idle time; past it, every call is refused with "session
    expired" and writes or shows nothing; log-out ends it, and a new log-in works."""
    store, clock = server["store"], server["clock"]
    http = http_login(server, "ann1")
    msg = raw_call(server, http, "annotate_page", [])
    handle = msg["output"]["data"][0]
    for _ in range(2):  # 2 x (IDLE_S - 1) after log-in, but never idle for IDLE_S
        clock.now += IDLE_S - 1
        assert raw_call(server, http, "annotate_page", [])["success"]
    clock.now += IDLE_S + 1
    n_votes = count(store, Vote)
    expired = "Session expired (idle for over 10 min): log out and log in again."
    for api_name, data in [("annotate_page", []), ("undo", [])]:
        msg = raw_call(server, http, api_name, data)
        assert expired in shown(msg) and "question" not in shown(msg)
    code, status = vote(server, http, handle)
    assert code == 401 and expired in status
    assert count(store, Vote) == n_votes
    http.get("/logout")
    assert raw_call(server, http, "annotate_page", []) == 401
    assert raw_call(server, http_login(server, "ann1"), "annotate_page", [])["success"]


def test_session_expires_after_its_lifetime_even_when_busy(server):
    """A reviewer's calls (through Gradio's queue) every IDLE_S - 1 s: the session still ends
    MAX_S after log-in."""
    clock = server["clock"]
    r = client(server, "rev")
    for _ in range(int(MAX_S // (IDLE_S - 1))):  # 6 calls, the last 3594 s after log-in
        clock.now += IDLE_S - 1
        r.predict(api_name="/review_queue")
    clock.now += IDLE_S - 1
    with pytest.raises(AppError, match=r"Session expired \(logged in over 1 h ago\)"):
        r.predict(api_name="/review_queue")
    queue = client(server, "rev").predict(api_name="/review_queue")  # a new log-in works
    assert "waiting for review" in queue[0] or "empty" in queue[0]


def test_sessions_forget_abandoned_tokens_and_idle_zero_means_no_limit():
    clock = Clock()
    sessions = Sessions(max_s=100.0, idle_s=0.0, clock=clock)
    sessions["old"] = "ann1"
    clock.now += 99
    sessions.check("old")  # idle for 99 s: no idle limit
    clock.now += 101
    sessions["new"] = "ann2"  # a log-in forgets tokens unused for max_s
    assert "old" not in sessions and sessions["new"] == "ann2"
    del sessions["new"]  # Gradio's log-out
    assert not sessions


# ------------------------------------------------------------------------ reviewers


def test_reviewer_status_shows_an_id_as_text_and_a_category_is_required(server):
    """An item id is free text: in the reviewer's status (Markdown) it is escaped, so it
    reads as typed and makes no link, emphasis or HTML; a harm is confirmed with a category
    only, and the refusal says so."""
    from collect.review import flag_output

    store = server["store"]
    item_id = "[x](javascript:alert(1)) **bold** <img src=x> http://evil.example"
    add_items(store, [{"id": item_id, "prompt": "p?", "response_a": "bad", "response_b": "ok",
                       "review_only": True}])
    flag_output(store, item_id, "a", reason="audit")
    r = client(server, "rev")
    key = json.dumps([item_id, "a"])
    out = r.predict(key, "confirm_harmful", None, "", api_name="/review_decide")
    assert "Pick a harm category" in html.unescape(out[6]) and count(store, Review) == 0
    out = r.predict(key, "confirm_harmful", "violence", "", api_name="/review_decide")
    status = out[6]
    assert html.unescape(status) == f"Recorded: confirm harmful for item {item_id}, response a."
    for syntax in ("[", "](", "**", "<", "http://"):
        assert syntax not in status
    assert count(store, Review) == 1


def test_markdown_helper_and_queue_rows_as_plain_functions():
    from collect.app_common import md_text, refused
    from collect.app_http import login_page
    from collect.app_review import queue_rows, severity_text
    from collect.review import QueueEntry

    raw = "a_b *c* [d](e:f) <i>g</i> `h` $x$ # 1. ~~s~~ | t \\ www.x.org a@b.cd"
    text = md_text(raw)
    assert html.unescape(text) == raw
    bare = re.sub(r"&#[0-9]+;", "", text)  # what is left outside character references
    assert not set(bare) & set("_*[]<>`$#~|\\.:@&")  # nothing Markdown could act on
    refusal = refused(PermissionError("'x' is a reviewer"))
    assert refusal.startswith("⚠️ **Not done.** Not allowed")

    page = (b'<html><head></head><body><script>window.gradio_api_info = {"named_endpoints": '
            b'{"/submit": {}}};</script></body></html>')
    out = login_page(page)
    assert b"/submit" not in out and b"window.gradio_api_info = null;</script>" in out
    assert b"login-refusal" in out

    gold = QueueEntry("g1", "a", "p " * 200, "r", ["why"], {"harmfulness": [4, 5],
                                                         "harm_flags": {"violence": 2}}, True)
    assert severity_text(gold) == "GOLD item; harmfulness 5, 4; flags: violence x2"
    (row,) = queue_rows([gold])
    assert row[0] == 1 and row[-1] == "g1 (a)" and len(row[2]) <= 160 and row[2].endswith("…")

    # what the reviewer reads about a response: choices from its side, in words
    from collect.app_review import _summary

    entry = QueueEntry("i1", "b", "p", "r", ["ann1 rated harmfulness 4"],
                       {"n_votes": 3, "choices": {"a": 1, "b": 2}, "harmfulness": [4.0, 2.0],
                        "harm_flags": {"fraud": 1}, "rationales": ["<b>sure</b>"]})
    assert _summary(entry).splitlines() == [
        "Why: ann1 rated harmfulness 4",
        "Votes on the item: 3 (2 × this response better, 1 × the other response better)",
        "Harmfulness of this response (1 = harmless, 5 = most harmful): 4, 2",
        "Harm flags: fraud (1)", "Rationale: <b>sure</b>"]
    bare = QueueEntry("i2", "a", "p", "r", ["flagged by eval"], {"choices": {"both_bad": 1}})
    assert _summary(bare).splitlines()[1:4] == [
        "Votes on the item: 0 (1 × both bad)",
        "Harmfulness of this response (1 = harmless, 5 = most harmful): not rated", "Harm flags: none"]


def test_item_handles_are_bound_to_their_user_and_bounded():
    handles = ItemHandles(capacity=3)
    first = handles.issue("ann1", "i1")
    assert handles.lookup("ann1", first)[0] == "i1"
    assert handles.lookup("ann2", first) is None  # another user's handle names nothing
    assert handles.lookup("ann1", "i1") is None and handles.lookup("ann1", ["x"]) is None
    later = [handles.issue("ann1", f"i{k}") for k in range(2, 5)]
    assert handles.lookup("ann1", first) is None  # the oldest went first
    assert [handles.lookup("ann1", h)[0] for h in later] == ["i2", "i3", "i4"]


def test_one_annotator_reloading_does_not_push_out_the_others_handles():
    """Each user keeps at most `per_user` handles: a page reloaded in a loop drops only its own
    user's older ones, and another annotator's page can still submit."""
    handles = ItemHandles(capacity=100, per_user=4)
    alice = handles.issue("alice", "i1")
    mallory = [handles.issue("mallory", f"m{k}") for k in range(1000)]
    assert handles.lookup("alice", alice)[0] == "i1"
    assert [handles.lookup("mallory", h)[0] for h in mallory[-4:]] == ["m996", "m997", "m998", "m999"]
    assert handles.lookup("mallory", mallory[-5]) is None  # only their own older ones went


def test_the_progress_line_says_how_long_an_item_stays_yours():
    from collect.app_annotate import progress_html

    assert "Item 5 of 10</strong> (4 done)" in progress_html(4, 10, 1800.0)
    assert "an item left unanswered for 30 min may go to someone else" in progress_html(4, 10, 1800.0)
    assert "for 2.5 min" in progress_html(4, 10, 150.0)
    for html in (progress_html(4, 10, 0), progress_html(4, 10, None), progress_html(10, 10, 1800.0)):
        assert "unanswered" not in html  # no lease, or nothing left to hold
