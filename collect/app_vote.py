"""The annotator's submit as one plain JSON route, `POST /annotate/vote`, beside Gradio's.

Why not a Gradio event: every Gradio event costs the server about 5 ms of CPU before our
handler runs (its routing, per-component processing and the session-state store; a plain
FastAPI route on the same server costs about 1.25 ms), and the server's Python is one core.
With 32 annotators voting without pause, that floor alone decided the latency
(bench/collect_load.py). The page's Submit button runs a browser-side function
(app_annotate.SUBMIT_JS) that posts the form here and shows the answer, so a vote is one
HTTP request and no Gradio event.

What the route trusts, and what it does not:
- **Who**: the log-in session cookie Gradio set, looked up in the server's session map
  (`Sessions`, with its expiry); the role and account state are checked again in the vote's
  transaction (votes.submit_and_next), as for every handler.
- **Which item**: an opaque handle the server issued with the item (`ItemHandles`), bound to
  the user it was shown to. The browser never sees an item id, and a handle taken from
  someone else, made up, or forgotten (server restart) gets "no item loaded".
- **Where from**: only JSON bodies (an HTML form cannot send one), and a request from
  another site's page is refused before it gets here, as on every route
  (app_http.same_origin): no other site can make a logged-in browser vote.
- **What**: the answer's every value is checked by submit_and_next (choice, 1-5 ratings,
  harm categories, rationale text); the body is capped at MAX_BODY bytes.

A refusal is an HTTP 4xx whose JSON carries the status line the annotator reads; the item
and the form stay as they were.
"""
from __future__ import annotations

import collections
import json
import secrets
import threading
import time

import gradio as gr
from fastapi.routing import APIRoute
import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse

from .app_common import Sessions, refused
from .app_http import session_token
from .users import SESSION_BEGAN

VOTE_PATH = "/annotate/vote"
MAX_BODY = 64 * 1024  # a full answer with the longest rationale is under 20 kB
# Votes at once. Each is a short write; more threads only compete for the GIL and (SQLite) the
# one write lock. bench/collect_load.py, 32 clients, 2 cores: SQLite 390-410 votes/s with 4,
# 370-390 with 2; PostgreSQL 185-187 with 2 or 4, 166 with 8.
VOTE_THREADS = 4


class ItemHandles:
    """Opaque handles for the items on annotators' pages: handle -> (user, item id, when
    shown). At most `per_user` per user (their oldest go first: one per open tab is plenty) and
    `capacity` in all: a page whose handle was dropped gets "reload the page", as after a server
    restart. The cap per user keeps one annotator reloading in a loop from pushing out the
    handles of everyone else's pages."""

    def __init__(self, capacity: int = 100_000, per_user: int = 16):
        self.capacity, self.per_user = capacity, per_user
        self._items: collections.OrderedDict[str, tuple[str, str, float]] = \
            collections.OrderedDict()
        self._mine: dict[str, collections.deque[str]] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    def issue(self, user: str, item_id: str) -> str:
        handle = secrets.token_urlsafe(16)
        with self._lock:
            self._items[handle] = (user, item_id, time.time())
            mine = self._mine[user]
            mine.append(handle)
            while len(mine) > self.per_user:
                self._items.pop(mine.popleft(), None)
            while len(self._items) > self.capacity:
                old, (owner, _, _) = self._items.popitem(last=False)
                self._mine[owner].remove(old)
        return handle

    def lookup(self, user: str, handle: object) -> tuple[str, float] | None:
        """(item id, when shown) of `user`'s handle; None for anything else."""
        if not isinstance(handle, str):
            return None
        with self._lock:
            entry = self._items.get(handle)
        if entry is None or entry[0] != user:
            return None
        return entry[1], entry[2]


class Refusal(Exception):
    """A vote refused before it reached the store: the HTTP status and what the person reads."""

    def __init__(self, code: int, text: str):
        super().__init__(text)
        self.code = code


def _session(request: Request) -> tuple[str, float | None]:
    """The user behind the request's session cookie and when that session began (see
    app_common.Sessions)."""
    sessions, cookie_id = request.app.tokens, request.app.cookie_id
    token = session_token(request.cookies, cookie_id)
    if token is None or token not in sessions:
        raise Refusal(401, "Not logged in: reload the page and log in.")
    if not isinstance(sessions, Sessions):
        raise Refusal(500, "This server has no session expiry: start it with "
                           "`rlhf collect serve`.")
    sessions.check(token)  # "Session expired ..." (a gr.Error) for an old or idle one
    return sessions[token], sessions.began(token)


async def _answer(request: Request) -> dict:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise Refusal(415, "Refused: the answer must be sent as JSON.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise Refusal(413, f"Refused: an answer is at most {MAX_BODY // 1024} kB.")
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[..." nested too deep
        raise Refusal(400, "Refused: the answer is not valid JSON.") from None
    if not isinstance(answer, dict):
        raise Refusal(400, "Refused: the answer must be a JSON object.")
    return answer


def vote_route(view) -> APIRoute:
    """The route for an AnnotateView (its `vote` does the work, on one of VOTE_THREADS
    worker threads of its own)."""
    limiter = anyio.CapacityLimiter(VOTE_THREADS)

    async def vote(request: Request) -> JSONResponse:
        try:
            answer = await _answer(request)
            name, began = _session(request)
        except Refusal as e:
            return JSONResponse({"saved": False, "status": refused(str(e))}, e.code)
        except gr.Error as e:  # Sessions.check: "Session expired ..."
            return JSONResponse({"saved": False, "status": refused(e)}, 401)
        token = SESSION_BEGAN.set(began)  # the worker thread runs in a copy of this context
        try:
            code, shown = await anyio.to_thread.run_sync(view.vote, name, answer,
                                                         limiter=limiter)
        finally:
            SESSION_BEGAN.reset(token)
        return JSONResponse(shown, code)

    return APIRoute(VOTE_PATH, vote, methods=["POST"], include_in_schema=False)
