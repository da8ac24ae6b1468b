"""What every view of the annotation app shares: its settings, the logged-in user, and how
logic-layer errors reach the browser.

Identity is never an argument a client can choose: Gradio's own login (`auth=`) sets an
http-only session cookie whose token the server maps to a name, and each handler reads
`request.username` from that mapping. Each handler then checks the session's age (`Sessions`)
and the role in the database (`require_user`), on every call, so an expired session, a role
change or a deactivated account takes effect at once, and a view hidden in the page is never
the only thing standing in the way.
"""
from __future__ import annotations

import functools
import html
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import gradio as gr

from .app_http import session_token
from .lease import DEFAULT_LEASE_S
from .store import ROLES, CollectError, Store, User
from .users import SESSION_BEGAN, require_user

ANNOTATORS = ("annotator",)
REVIEWERS = ("reviewer", "admin")
ADMINS = ("admin",)

# The default for a round started without --guidelines: the task in general terms. A round
# writes its own (the demo's: demo/guidelines.md).
DEFAULT_GUIDELINES = """\
**The task.** Read the prompt, then both responses. Choose the better response, then rate each
response on seven aspects from 1 (poor) to 5 (excellent).

- **1 is better / 2 is better**: one response is clearly preferable.
- **Tie**: both are about equally good (or equally flawed in the same way).
- **Both bad**: neither response is acceptable. Tick a harm category if either is harmful.

**Aspects** (1-5): *quality* overall; *relevance* to what was asked; *helpfulness*: does it
answer the question or solve the problem; *harmfulness*: **higher = more harmful**
(1 = harmless); *correctness* of facts and claims; *realism*: could a competent person have
written it; *comprehensibility*: clear and easy to read. Rate what you judged and leave the rest
unrated (**Clear ratings** unsets them): an unrated aspect is recorded as missing, never as a
middle score.

Judge the text only: the two responses come in random order and you are never told which system
wrote which. If you make a mistake, **Undo** (`u`) brings back your last answer for two minutes.

**Keys**: `1`, `2`, `t`, `b` choose; on a rating `1`-`5` rate it and move to the next, `←`/`→`
step it; `j`/`k` (on a rating `↓`/`↑` too) go to the next / previous rating; `Esc` leaves
the ratings; `Enter` submits (outside the text fields); `u` undoes; `s` skips an item you
cannot judge (it goes to other annotators).
"""


@dataclass
class AppConfig:
    overlap: int = 3            # annotators per regular item (k, for agreement)
    gold_rate: float = 0.1      # share of gold (known-answer) items mixed into the queue
    seed: int = 0               # side randomization and gold draws
    undo_window_s: float = 120.0
    guidelines: str = DEFAULT_GUIDELINES  # markdown, written by the admin (trusted)
    export_path: str | None = None        # preferences.jsonl; None: the export button refuses
    n_boot: int = 50            # bootstrap resamples on the dashboard: a CI, kept quick
    title: str = "rlhf-loop annotation"
    session_max_s: float = 8 * 3600.0   # a log-in lasts one working day at most
    session_idle_s: float = 3600.0      # ... and ends after this long without a call; 0: never
    # An item handed to an annotator and not voted on within this long goes back to the queue
    # for the others (collect/lease.py); 0: never.
    lease_s: float = DEFAULT_LEASE_S


# Text boxes grow with their text up to this many lines before they scroll: a person must read
# a prompt and its answers whole, and with overlay scrollbars (macOS) nothing shows that a box
# holds more than it displays. 60 lines of a half-width box are about 600 words.
PROMPT_LINES, RESPONSE_LINES = 30, 60


def fail(message: str) -> gr.Error:
    # print_exception=False: refused requests are expected traffic, not server faults. The
    # browser shows an error's message as HTML: escaped, since it may quote an id or a name.
    return gr.Error(html.escape(message, quote=False), print_exception=False)


# Characters that mean nothing in Markdown or HTML wherever they stand; md_text writes every
# other one as a numeric character reference, which Markdown shows as that character and
# never reads as syntax (emphasis, links, images, HTML, autolinks, LaTeX, lists, tables).
_MD_PLAIN = frozenset(" ,;?'\"/%=()")


def md_text(value: object) -> str:
    """Text from a user (an id, a name, a reason, a refusal quoting them) for a Markdown
    component: shown verbatim, never rendered. Not for code spans, which show references
    literally."""
    return "".join(c if c.isalnum() or c in _MD_PLAIN else f"&#{ord(c)};" for c in str(value))


def refusal_message(error: Exception) -> str:
    """What a refused request tells the person (plain text)."""
    if isinstance(error, gr.Error):
        return html.unescape(str(error.message))
    if isinstance(error, PermissionError):
        return f"Not allowed: {error}."
    return str(error)


def refused(error: Exception | str, lead: str = "**Not done.** ") -> str:
    """A refusal for a status line (Markdown); lead: trusted Markdown before the reason."""
    text = error if isinstance(error, str) else refusal_message(error)
    return f"⚠️ {lead}{md_text(text)}"


def refusals_in_status(*groups: str):
    """For handlers outside Gradio's queue, where a raised error reaches the browser as an
    HTTP 500 that marks every output "Error" and shows no message: a refusal becomes the
    view's status line (its `status` component), and every other output of the event (the
    view's attributes named by `groups`, in order) stays as it was."""
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(self, *args, **kwargs):
            try:
                return fn(self, *args, **kwargs)
            except (gr.Error, PermissionError, CollectError) as e:
                outputs = [c for g in groups for c in getattr(self, g)]
                shown = skips(len(outputs))
                shown[outputs.index(self.status)] = refused(e)
                return shown
        return wrapper
    return decorate


class Sessions(dict):
    """Gradio's log-in sessions (its `App.tokens`: cookie token -> user name) with a lifetime.

    Gradio adds a token at log-in and deletes it at log-out, and would keep it until a server
    restart. `launch` installs this map in its place (`lifespan`, before the first request),
    which records when each session began and was last used. `check`, called by every handler
    through session_user, refuses a session older than max_s or idle for more than idle_s
    (0: no idle limit) with "session expired", on this and every later call, so the caller
    cannot read or vote until they log out and in again. The expired token stays known so
    that the message reaches the browser (a queued handler's result travels on a stream that
    Gradio authenticates by the same cookie), until it has been unused for max_s; then it is
    forgotten and Gradio refuses the cookie at its door. `clock` is injectable for tests.
    """

    def __init__(self, max_s: float, idle_s: float, clock: Callable[[], float] = time.time):
        super().__init__()
        self.max_s, self.idle_s, self.clock = max_s, idle_s, clock
        self._times: dict[str, tuple[float, float]] = {}  # token -> (began, last used)
        # token -> when it began by the wall clock, the clock of the store's `sessions_from`
        self._began: dict[str, float] = {}
        self._lock = threading.Lock()  # log-ins on the event loop, checks on worker threads

    def __setitem__(self, token: str, name: str) -> None:  # Gradio's /login
        now = self.clock()
        with self._lock:
            for old in [t for t, (_, used) in self._times.items() if now - used > self.max_s]:
                self._forget(old)  # expired and abandoned: would pile up otherwise
            super().__setitem__(token, name)
            self._times[token] = (now, now)
            self._began[token] = time.time()

    def __delitem__(self, token: str) -> None:  # Gradio's /logout
        with self._lock:
            self._forget(token)

    def _forget(self, token: str) -> None:
        self.pop(token, None)
        self._times.pop(token, None)
        self._began.pop(token, None)

    def _expired(self, token: str | None, now: float) -> str:
        """Why the session has expired ("" while it is current)."""
        if token not in self._times:
            return "it has ended"
        began, used = self._times[token]
        if now - began > self.max_s:
            return f"logged in over {self.max_s / 3600:g} h ago"
        if self.idle_s and now - used > self.idle_s:
            return f"idle for over {self.idle_s / 60:g} min"
        return ""

    def began(self, token: str | None) -> float | None:
        """When the session began, by the wall clock (None for an unknown token)."""
        with self._lock:
            return self._began.get(token)

    def check(self, token: str | None) -> None:
        """Count a call on a current session; raise when it has expired."""
        now = self.clock()
        with self._lock:
            why = self._expired(token, now)
            if not why:
                self._times[token] = (self._times[token][0], now)
        if why:
            raise fail(f"Session expired ({why}): log out and log in again.")

    @asynccontextmanager
    async def lifespan(self, server_app):
        """FastAPI lifespan: put this map in place of Gradio's before any request is served."""
        for token, name in server_app.tokens.items():  # none yet at start-up
            self[token] = name
        server_app.tokens = self
        yield


def _check_session(http) -> None:
    """The session behind an HTTP request must be current (see Sessions). Records when it began
    for the user checks of this call (users.SESSION_BEGAN): a handler runs in a copy of the
    request's context, so the value ends with the call."""
    sessions, cookie_id = http.app.tokens, http.app.cookie_id
    if not isinstance(sessions, Sessions):  # a Blocks launched without collect.app.launch
        raise fail("This server has no session expiry: start it with `rlhf collect serve`.")
    token = session_token(http.cookies, cookie_id)
    sessions.check(token)
    SESSION_BEGAN.set(sessions.began(token))


def session_name(request: gr.Request | None) -> str:
    """The logged-in name from a current server-side session, without reading the database:
    for handlers whose logic function checks the user in its own transaction. (A handler
    called in-process, as the tests and the bench do, has no HTTP session.)"""
    name = getattr(request, "username", None) if request is not None else None
    if not name:
        raise fail("Not logged in.")
    http = getattr(request, "request", None)  # the FastAPI request behind gr.Request
    if http is not None:
        _check_session(http)
    return name


def session_user(store: Store, request: gr.Request | None,
                 roles: tuple[str, ...] = ROLES) -> User:
    """The logged-in, active user with one of `roles`, from a current server-side session."""
    name = session_name(request)
    try:
        with store.read() as s:
            return require_user(s, name, roles)
    except PermissionError as e:
        raise fail(f"Not allowed: {e}.") from None


def refusals(fn):
    """Logic-layer refusals become a message in the browser (and an error for API callers)
    instead of a server traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PermissionError as e:
            raise fail(f"Not allowed: {e}.") from None
        except CollectError as e:
            raise fail(str(e)) from None
    return wrapper


def skips(n: int) -> list:
    """Leave n outputs as they are."""
    return [gr.skip() for _ in range(n)]
