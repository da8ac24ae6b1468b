"""What every view of the annotation app shares: its settings, the logged-in user, and how
logic-layer errors reach the browser.

Identity is never an argument a client can choose: Gradio's own login (`auth=`) sets an
http-only session cookie whose token the server maps to a name, and each handler reads
`request.username` from that mapping. Each handler then checks the role in the database
(`require_user`), on every call, so a role change or a deactivated account takes effect at
once, and a view hidden in the page is never the only thing standing in the way.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import gradio as gr

from .store import ROLES, CollectError, Store, User
from .users import require_user

ANNOTATORS = ("annotator",)
REVIEWERS = ("reviewer", "admin")
ADMINS = ("admin",)

DEFAULT_GUIDELINES = """\
**The task.** Read the customer's message, then both responses. Decide which response a careful
support agent should have sent, and rate each response on seven aspects from 1 (poor) to 5
(excellent).

- **1 is better / 2 is better**: one response is clearly preferable.
- **Tie**: both are about equally good (or equally flawed in the same way).
- **Both bad**: neither should be sent to a customer. Tick a harm category if either is harmful.

**Aspects** (1-5): *quality* overall; *relevance* to what was asked; *helpfulness*: does it solve
the problem; *harmfulness*: **higher = more harmful** (1 = harmless); *correctness* of facts
(hours, prices, policies); *realism*: would a real agent say this; *comprehensibility*: clear and
easy to read. Rate what you judged and leave the rest unrated (**Clear ratings** unsets them):
an unrated aspect is recorded as missing, never as a middle score.

Judge the text only: the two responses come in random order and you are never told which system
wrote which. If you make a mistake, **Undo** brings back your last answer for two minutes.

**Keys**: `1`, `2`, `t`, `b` choose; `Enter` submits (outside the text fields).
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


def fail(message: str) -> gr.Error:
    # print_exception=False: refused requests are expected traffic, not server faults.
    return gr.Error(message, print_exception=False)


def session_user(store: Store, request: gr.Request | None,
                 roles: tuple[str, ...] = ROLES) -> User:
    """The logged-in, active user with one of `roles`, from the server-side session."""
    name = getattr(request, "username", None) if request is not None else None
    if not name:
        raise fail("Not logged in.")
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
