"""`rlhf collect serve`: the Gradio annotation app, a thin layer over collect/'s functions.

One page, one tab per role: annotators annotate, reviewers (and admins) work the safety
queue, admins watch progress and agreement and export. Which tabs show is cosmetic: every
handler derives the user from the server-side session and checks the role in the database
(see app_common.session_user), and the logic functions check again.

Log-in is Gradio's own (`auth=`), backed by collect.users.verify_user (scrypt): Gradio then
refuses every API route, the page config and file routes without a valid session cookie, so
an unauthenticated client can call nothing at all; the log-in page it gets carries no API
schema, and guesses are throttled per address and per name before any password is checked
(app_http). The cookie is http-only and its token maps to the user name on the server; a
session ends at logout, server restart, or when it expires (AppConfig.session_max_s after
log-in, session_idle_s without a call: app_common.Sessions, checked by every handler), and a
deactivated account loses every right at its next request.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import anyio
import gradio as gr
from fastapi import HTTPException
from starlette.middleware import Middleware

from core.config import UserError

from .app_admin import AdminView
from .app_annotate import KEYBOARD_JS, AnnotateView
from .app_common import (ADMINS, ANNOTATORS, REVIEWERS, AppConfig, Sessions, md_text, refused,
                         session_user, skips)
from .app_http import CLIENT_ADDRESS, Gate, LoginThrottle, Throttled
from .app_review import ReviewView
from .app_vote import vote_route
from .store import Store
from .users import verify_user

# Read when a Blocks is built. Gradio rebuilds its monitoring summary (a pandas frame over
# up to 10k past events) after every event by default: 13 ms per vote on 2 cores, and more
# with uptime. Once per 1000 events is plenty for a dashboard we do not show.
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")

DEFAULT_HOST = "127.0.0.1"  # loopback: opening the app to a network is an explicit choice
DEFAULT_PORT = 7860
CSS = """
#progress { scroll-margin-top: 0.5rem; }  /* where a submit scrolls to: the next item's top */
#progress .progress-line { font-size: 1.05em; }
#progress .progress-note { font-size: 0.8em; color: var(--body-text-color-subdued); }
#progress progress { width: 100%; height: 0.6rem; accent-color: var(--color-accent); }
#annotate-panel { gap: 0.5rem; }
#key-map { font-size: 0.85em; color: var(--body-text-color-subdued); }
/* The ratings: one compact row per aspect, Response 1 and Response 2 as columns of 1-5 (Gradio
   wraps the row's two radios in a .form box of its own). */
#ratings { gap: 0; }
#ratings .rate-row { gap: 0.5rem; align-items: center; flex-wrap: nowrap;
  border-bottom: 1px solid var(--border-color-primary); padding: 0.1rem 0; }
#ratings .rate-row > .form { flex: 0 0 auto !important; min-width: 0 !important; gap: 0.5rem;
  flex-direction: row; flex-wrap: nowrap; background: none; border: 0; box-shadow: none; }
#ratings .rate-aspect { flex: 1 1 10rem; min-width: 0 !important; padding: 0.2rem 0; }
#ratings .rate-aspect p { margin: 0; }
#ratings .rate-help { color: var(--body-text-color-subdued); font-size: 0.85em; }
#ratings .rate-col { flex: 0 0 17rem !important; width: 17rem; min-width: 0 !important; }
#ratings .rate-cell { padding: 0.15rem 0.3rem; border: 0; box-shadow: none; background: none; }
#ratings .rate-cell .wrap { gap: 0.25rem; flex-wrap: nowrap; }
#ratings .rate-cell label { padding: 0.2rem 0.45rem; }
#ratings .rate-cell:focus-within { outline: 2px solid var(--color-accent); border-radius: 0.4rem; }
#ratings .rate-head .rate-col { text-align: center; }
#ratings .rate-head .rate-col p { margin: 0; }
@media (max-width: 700px) {
  /* the two responses one above the other: side by side each would be ~15 characters wide */
  #responses { flex-direction: column; }
  #ratings .rate-row { flex-wrap: wrap; }
  #ratings .rate-aspect { flex-basis: 100%; }
  #ratings .rate-row > .form { flex-direction: column; flex-basis: 100% !important; gap: 0.2rem; }
  #ratings .rate-head .rate-col { display: none; }
  #ratings .rate-col { flex: 1 1 auto !important; width: 100%; }
  #ratings .rate-cell label { padding: 0.2rem 0.35rem; }
  #ratings .rate-cell .wrap::before { align-self: center; width: 1.6rem; font-size: 0.85em;
    color: var(--body-text-color-subdued); }
  #ratings [id^=rate-left-] .wrap::before { content: "R1"; }
  #ratings [id^=rate-right-] .wrap::before { content: "R2"; }
}
/* Nothing left to annotate (the progress line says "All done"): no empty form to fill in,
   only Undo. */
#annotate-panel:has(.all-done) :is(#prompt, #responses, #choice, #key-map, #ratings, #submit-vote,
  #clear-ratings, #skip-item, #harm-flags, #rationale, .form:has(#prompt, #choice, #harm-flags, #rationale)) {
  display: none !important; }
/* The key map is for keyboards: a touch screen has none. */
@media (pointer: coarse) { #key-map { display: none; } }
/* The annotator's status line (saved, undone, refused) is in view wherever the page is
   scrolled: a bar at the window's foot while it says something. */
#annotate-status:has(.md p) { position: fixed; bottom: 1rem; left: 50%; z-index: 50;
  transform: translateX(-50%); width: auto; max-width: min(48rem, 90vw); padding: 0.5rem 1rem;
  border: 1px solid var(--border-color-accent); border-radius: 0.5rem;
  background: var(--background-fill-primary); box-shadow: 0 2px 10px rgba(0, 0, 0, 0.15); }
"""


def make_auth(store: Store, throttle: LoginThrottle | None = None):
    """Gradio's auth callable. Async, with the scrypt check on a worker thread, so a log-in
    does not stall the event loop that serves everyone else. The throttle decides before the
    check (see LoginThrottle); a throttled log-in is answered 429 with the reason, which the
    log-in page shows (app_http.LOGIN_SCRIPT)."""
    throttle = throttle or LoginThrottle()

    async def auth(name: str, password: str) -> bool:
        address = CLIENT_ADDRESS.get()
        try:
            reserved = throttle.reserve(name, address, time.time())
        except Throttled as e:
            raise HTTPException(429, detail=str(e),
                                headers={"Retry-After": str(math.ceil(e.retry_after_s))}) from None
        ok = await anyio.to_thread.run_sync(verify_user, store, name, password) is not None
        if ok:
            throttle.release(name, address, reserved)
        return ok

    return auth


def whoami(store: Store, request: gr.Request) -> list:
    """Header text and which tabs to show for the logged-in user's role; a refused session
    (expired, deactivated) gets the reason in the header and no tab."""
    try:
        user = session_user(store, request)
    except gr.Error as e:
        return [refused(e, lead="")] + skips(4)
    first = {"annotator": "annotate", "reviewer": "review", "admin": "admin"}[user.role]
    return [f"Logged in as **{md_text(user.name)}** ({user.role})",
            gr.update(visible=user.role in ANNOTATORS), gr.update(visible=user.role in REVIEWERS),
            gr.update(visible=user.role in ADMINS), gr.update(selected=first)]


def build_app(store: Store, cfg: AppConfig | None = None) -> gr.Blocks:
    cfg = cfg or AppConfig()
    annotate, review, admin = (AnnotateView(store, cfg), ReviewView(store, cfg),
                               AdminView(store, cfg))
    with gr.Blocks(title=cfg.title, analytics_enabled=False) as app:
        with gr.Row():
            header = gr.Markdown("", elem_id="whoami")
            gr.Button("Log out", link="/logout", size="sm", scale=0, elem_id="logout")
        with gr.Tabs() as tabs:
            with gr.Tab("Annotate", id="annotate", visible=False) as annotate_tab:
                annotate.build()
            with gr.Tab("Safety review", id="review", visible=False) as review_tab:
                review.build()
            with gr.Tab("Admin", id="admin", visible=False) as admin_tab:
                admin.build()
        for view in (annotate, review, admin):
            view.wire()

        def on_load(request: gr.Request) -> list:
            return whoami(store, request)

        # The annotator's calls skip Gradio's queue (see AnnotateView.wire); the reviewer's and
        # admin's go through it, two at a time: the dashboard's bootstrap is CPU work that
        # must not crowd out the annotators.
        load = app.load(on_load, None, [header, annotate_tab, review_tab, admin_tab, tabs],
                        api_name="whoami", queue=False)
        load.then(annotate.on_page_load, None, annotate.page_outputs, api_name="annotate_page",
                  queue=False)
        load.then(review.on_page_load, None, review.outputs, api_name="review_page")
        load.then(admin.on_page_load, None, admin.outputs, api_name="admin_page")
    app.queue(default_concurrency_limit=2)
    app.routes_beside = [vote_route(annotate)]  # plain HTTP routes that `launch` serves too
    return app


# Threads that run Gradio's handlers (its default: 40): page loads, undo, the reviewer's and the
# admin's calls (votes have their own, app_vote.VOTE_THREADS). These are short database calls
# too, and 40 threads competing for the GIL slowed the one holding SQLite's write lock
# (bench/collect_load.py, when votes were Gradio events: 114 votes/s with 40 threads, 146 with
# 8).
WORKER_THREADS = 8


def launch(app: gr.Blocks, store: Store, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
           prevent_thread_lock: bool = False, quiet: bool = False,
           sessions: Sessions | None = None, throttle: LoginThrottle | None = None) -> str:
    """Start the server with the app's log-in, session expiry, keyboard script and style;
    returns its URL. sessions: the lifetimes (default: AppConfig's); throttle: the log-in
    limits (default: LoginThrottle's).

    Off, because no role needs them: Gradio's run history (it would keep every input and
    output, rationales included, in the browser's localStorage after log-out and list them
    at /gradio_api/runs), file uploads (max_file_size=0: every upload route refuses any
    non-empty file with 413; no component here takes a file), and FastAPI's own route list
    at /openapi.json (served without log-in).

    The app's own routes (`routes_beside`, set by build_app: the vote route) come before
    Gradio's and check the session themselves."""
    if sessions is None:  # not `or`: a Sessions is a dict, and falsy while empty
        sessions = Sessions(AppConfig.session_max_s, AppConfig.session_idle_s)
    _, url, _ = app.launch(server_name=host, server_port=port, auth=make_auth(store, throttle),
                           auth_message="Log in with the account your admin created.",
                           head=KEYBOARD_JS, css=CSS, share=False, ssr_mode=False,
                           show_error=False, prevent_thread_lock=prevent_thread_lock,
                           quiet=quiet, footer_links=["settings"], run_history=False,
                           max_file_size=0, max_threads=WORKER_THREADS,
                           enable_monitoring=False,  # Gradio's /monitoring: every user's traffic, to any log-in
                           app_kwargs={"lifespan": sessions.lifespan, "openapi_url": None,
                                       "middleware": [Middleware(Gate)],
                                       "routes": list(getattr(app, "routes_beside", []))})
    return url


def serve(run: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          overlap: int = 3, gold_rate: float = 0.1, guidelines: str | Path | None = None,
          seed: int = 0, session_max_s: float = AppConfig.session_max_s,
          session_idle_s: float = AppConfig.session_idle_s, lease_s: float = AppConfig.lease_s,
          prevent_thread_lock: bool = False, db: str | None = None) -> gr.Blocks:
    """Serve the run's store (db: a SQLAlchemy URL; default <run>/collect/annotations.db);
    export goes to <run>/collect/preferences.jsonl. guidelines: a markdown file; default
    <run>/collect/guidelines.md when it exists, else generic ones. lease_s: how long an item
    stays with an annotator who has not voted on it (AppConfig.lease_s)."""
    from .commands import guidelines_path, preferences_path, store_for
    from .users import list_users

    cfg = AppConfig(overlap=overlap, gold_rate=gold_rate, seed=seed,
                    export_path=str(preferences_path(run)), session_max_s=session_max_s,
                    session_idle_s=session_idle_s, lease_s=lease_s)
    if not guidelines and guidelines_path(run).is_file():
        guidelines = guidelines_path(run)
    if guidelines:
        try:
            cfg.guidelines = Path(guidelines).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(f"--guidelines {guidelines}: file not found") from None
        except UnicodeDecodeError as e:
            raise UserError(f"--guidelines {guidelines}: not UTF-8 text (byte {e.start})") from None
    store = store_for(run, db)
    if not list_users(store):
        print(f"no accounts yet: add one with `rlhf collect users add NAME --role admin "
              f"--run {run}{' --db URL' if db else ''}`")
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: binding {host} exposes the app beyond this machine; put it behind "
              "HTTPS (a reverse proxy), since passwords travel in the log-in form")
    app = build_app(store, cfg)
    url = launch(app, store, host, port, prevent_thread_lock=prevent_thread_lock,
                 sessions=Sessions(cfg.session_max_s, cfg.session_idle_s))
    print(f"annotation app for {run} at {url}")
    return app

