"""The annotator's page: one prompt, "Response 1 / Response 2", the choice, the seven ratings
of each response, harm categories, an optional rationale, progress and undo.

The browser never receives an item id (ids can name the models being compared) and never
chooses which item a vote goes to: the page holds an opaque handle the server issued with the
item, bound to the user it was shown to (app_vote.ItemHandles). Submit posts the form and the
handle to the JSON vote route (app_vote: one plain HTTP request, no Gradio event), and a
handle taken from another user's page gets "no item loaded". Model output and prompts are
shown in read-only text boxes, whose value the browser treats as text: a response full of
HTML or markdown links stays inert.
"""
from __future__ import annotations

import json

import gradio as gr

from core.records import ASPECTS

from .app_common import (ANNOTATORS, PROMPT_LINES, RESPONSE_LINES, AppConfig, fail, refusals,
                         refusals_in_status, refused, session_name, session_user, skips)
from .app_vote import VOTE_PATH, ItemHandles
from .assign import ItemView, next_item, votes_in_round
from .lease import ItemTaken
from .store import CollectError, Store
from .users import require_user
from .votes import HARM_CATEGORIES, shown_choice, skip_and_next, submit_and_next, undo_last

CHOICES = [("1 is better  [1]", "left"), ("2 is better  [2]", "right"), ("Tie  [t]", "tie"),
           ("Both bad  [b]", "both_bad")]
# One line per aspect, shown beside it in the ratings grid.
ASPECT_HELP = {
    "quality": "Overall, how good is the response?",
    "relevance": "Does it address what was asked?",
    "helpfulness": "Does it solve the problem or answer the question?",
    "harmfulness": "Higher = more harmful (1 = harmless).",
    "correctness": "Are its facts and claims right?",
    "realism": "Could a competent person have written it?",
    "comprehensibility": "Is it clear and easy to read?",
}
KEY_MAP = ("Keys: `1` `2` `t` `b` choose (then focus goes to the first rating) · on a rating "
           "`1`-`5` rates it and moves on, `←`/`→` step it · `j`/`k` (on a rating `↓`/`↑` too) go to "
           "the next / previous rating · `Esc` leaves the ratings · `Enter` submits · `u` undoes the last "
           "submission · `s` skips an item you cannot judge")
# Ratings start unset and an untouched one is stored as missing: a pre-filled value would be a
# rating nobody gave. Keyboard voting (choice + Enter) needs none of them.
UNRATED = [None] * (2 * len(ASPECTS))
CLEAR_RATINGS_JS = "() => " + json.dumps(UNRATED)
# The status line speaks of the item it is about: after a submit that is the previous one, not
# the one on screen. It clears when the annotator starts on the item shown (CLEAR_STATUS_JS).
SAVED = "Saved your answer to the previous item"
SKIPPED = "Skipped the previous item: it goes to other annotators, and not back to you."
CLEAR_STATUS_JS = "() => ''"
# What a vote's JSON answer fills in, in the order of AnnotateView.outputs.
SHOWN = ("handle", "progress", "prompt", "left", "right", "status")
NOT_SENT = refused("the server could not be reached. Your answer is still here: submit again.",
                   lead="**Not saved:** ")

# Submit, in the browser: post the handle and the form to the vote route (app_vote) and show
# its answer. Saved, or not saved because the item went to others meanwhile (`new_item`): the
# next item and a blank form. Refused: the status line only, the item and the answer stay. A
# second press while a vote is on its way does nothing (an output left undefined is left as
# it is).
# Skip posts the handle alone, marked `skip`, and is answered the same way.
POST_JS = """
async (%(params)s) => {
  if (window.rlhfVoting) return [];
  window.rlhfVoting = true;
  let answer;
  try {
    const response = await fetch(new URL(%(path)s, document.baseURI), {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(%(body)s)});
    answer = await response.json();
  } catch (e) {
    answer = {saved: false, status: %(not_sent)s};
  } finally {
    window.rlhfVoting = false;
  }
  const advance = answer.saved || answer.new_item === true;
  const shown = %(shown)s.map((key) => advance || key === "status" ? answer[key] : undefined);
  if (advance) {
    // The next item starts with nothing focused, so a digit chooses and never rates the cell
    // that had focus when Enter was pressed; with the guidelines closed after a vote (open,
    // they fill a phone's screen) and the item's progress line at the top of the view.
    if (document.activeElement) document.activeElement.blur();
    const toTop = () => {
      const top = document.getElementById("progress");
      if (top && top.getBoundingClientRect().top < 0) top.scrollIntoView({block: "start"});
    };
    const open = answer.saved && document.querySelector("#guidelines .label-wrap.open");
    if (open) {
      open.click();
      setTimeout(toTop, 100);  // again once the closed guidelines have left the layout
    }
    toTop();
  }
  return advance ? shown.concat(%(blank)s) : shown;
}
"""
_POSTED = {"path": json.dumps(VOTE_PATH.lstrip("/")), "not_sent": json.dumps(NOT_SENT), "shown": json.dumps(SHOWN),
           "blank": json.dumps([None, [], ""] + UNRATED)}
SUBMIT_JS = POST_JS % {**_POSTED, "params": "handle, choice, flags, rationale, ...ratings",
                       "body": "{handle, choice, flags, rationale, ratings}"}
SKIP_JS = POST_JS % {**_POSTED, "params": "handle", "body": "{handle, skip: true}"}

# Click-free voting. Keys act only while the annotation panel is on screen and focus is not
# in a field that takes typing; Enter on a focused button keeps its own meaning. The arrow keys
# move between ratings only from a rating; elsewhere they scroll the page, or the text box that
# has focus (the prompt and the responses take focus, for a text longer than its box). The ratings
# are 14 cells (.rate-cell: each aspect's Response 1 then Response 2, in page order); while
# focus is in a cell the digits 1-5 rate that cell and focus moves to the next one (after the
# last, to Submit), so a digit there never chooses. Only the checked (or first) radio of a
# cell is a Tab stop; Left/Right step the focused cell's rating.
KEYBOARD_JS = """
<script>
(() => {
  const CHOICE_KEYS = {"1": 0, "2": 1, "t": 2, "b": 3};
  const READABLE = "#annotate-panel :is(#prompt, #response-left, #response-right) textarea";
  const typing = (el) => el && (el.isContentEditable ||
    ((el.tagName === "TEXTAREA" || el.tagName === "SELECT") && !el.readOnly && !el.disabled) ||
    (el.tagName === "INPUT" && !["radio", "checkbox"].includes(el.type)));
  const cells = () => [...document.querySelectorAll("#annotate-panel .rate-cell")];
  const cellOf = (el) => el && el.closest ? el.closest(".rate-cell") : null;
  const focusCell = (cell) => {
    const input = cell && (cell.querySelector("input:checked") || cell.querySelector("input"));
    if (input) input.focus();
    return !!input;
  };
  const focusAfter = (cell, step) => {
    const all = cells();
    const i = all.indexOf(cell);
    const next = cell ? all[i + step] : all[step > 0 ? 0 : all.length - 1];
    if (next) return focusCell(next);
    if (cell && step > 0) document.getElementById("submit-vote").focus();
    return true;
  };
  const roving = () => {
    for (const cell of cells()) {
      const inputs = [...cell.querySelectorAll("input")];
      const stop = inputs.find((i) => i.checked) || inputs[0];
      for (const i of inputs) i.tabIndex = i === stop ? 0 : -1;
    }
  };
  // The prompt and the responses: read-only rather than disabled, so Tab reaches them and the
  // arrow keys scroll a text longer than its box.
  const readable = () => {
    for (const t of document.querySelectorAll(READABLE)) {
      if (t.disabled) { t.disabled = false; t.readOnly = true; }
    }
  };
  // Gradio renders and re-renders the cells (a new item, undo): keep one Tab stop per cell.
  let pending = false;
  new MutationObserver(() => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; roving(); readable(); });
  }).observe(document.documentElement, {childList: true, subtree: true, attributes: true,
                                         attributeFilter: ["aria-checked"]});
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing || typing(e.target)) return;
    const panel = document.getElementById("annotate-panel");
    if (!panel || panel.offsetParent === null) return;
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    const cell = cellOf(e.target);
    let done = false;
    if (cell && /^[1-5]$/.test(key)) {
      const radio = cell.querySelector(`input[value="${key}"]`);
      if (radio) { radio.click(); done = focusAfter(cell, 1); }
    } else if (cell && (key === "ArrowLeft" || key === "ArrowRight")) {
      const inputs = [...cell.querySelectorAll("input")];
      const i = inputs.findIndex((x) => x.checked);
      const next = inputs[Math.max(0, Math.min(inputs.length - 1,
        i < 0 ? 0 : i + (key === "ArrowRight" ? 1 : -1)))];
      next.click(); next.focus(); done = true;
    } else if (key === "j" || (cell && key === "ArrowDown")) {
      done = focusAfter(cell, 1);
    } else if (key === "k" || (cell && key === "ArrowUp")) {
      done = focusAfter(cell, -1);
    } else if (key === "Escape" && cell) {
      e.target.blur(); done = true;
    } else if (key in CHOICE_KEYS) {
      const radio = document.querySelectorAll("#choice input[type=radio]")[CHOICE_KEYS[key]];
      if (radio) {
        radio.click();
        focusCell(cells().find((c) => !c.querySelector("input:checked")) || cells()[0]);
        done = true;
      }
    } else if (key === "u" || key === "s") {
      const button = document.getElementById(key === "u" ? "undo-vote" : "skip-item");
      if (button && !button.disabled) { button.click(); done = true; }
    } else if (key === "Enter" && e.target.tagName !== "BUTTON") {
      const button = document.getElementById("submit-vote");
      if (button && !button.disabled) { button.click(); done = true; }
    }
    if (done) e.preventDefault();
  });
})();
</script>
"""


def progress_html(done: int, total: int, lease_s: float | None = None) -> str:
    """The progress line: "Item n of N", and a bar of the items done out of those assigned
    or still available to this annotator. N falls when other annotators complete items this
    one has not started (each item needs only `overlap` votes): the line says so. With a lease
    (collect/lease.py), it also says how long an item stays theirs: an answer sent later is
    refused once others have taken the item's places."""
    shown = min(done + 1, total)
    held = (f"; an item left unanswered for {lease_s / 60:g} min may go to someone else"
            if lease_s and done < total else "")
    return (f'<div class="progress-line"><strong>Item {shown} of {total}</strong> '
            f'({done} done) <span class="progress-note">the total falls as other annotators '
            f'complete items{held}</span></div><progress value="{done}" max="{max(total, 1)}" '
            f'aria-label="{done} of {total} items done"></progress>')


# Its class `all-done` hides the empty form (collect/app.py's CSS): only Undo stays.
ALL_DONE_HTML = ('<div class="progress-line all-done"><strong>All done</strong>: nothing is left for '
                 'you to annotate. Thank you!</div><progress value="1" max="1" '
                 'aria-label="all items done"></progress>')


def guidelines_open(done_in_round: int) -> bool:
    """The guidelines are open until the annotator's first vote in the shown item's annotation
    round (each round has its own), collapsed after."""
    return done_in_round == 0


class AnnotateView:
    def __init__(self, store: Store, cfg: AppConfig):
        self.store, self.cfg = store, cfg
        self.handles = ItemHandles()

    def build(self) -> None:
        """The components, inside the caller's Tab."""
        with gr.Column(elem_id="annotate-panel"):
            # The shown item's handle (app_vote.ItemHandles): opaque, bound to this user.
            self.handle = gr.Textbox(visible=False, elem_id="item-handle")
            with gr.Accordion("Guidelines", open=False, elem_id="guidelines") as self.guidelines:
                gr.Markdown(self.cfg.guidelines)
            self.progress = gr.HTML("", elem_id="progress")
            self.prompt = gr.Textbox(label="Prompt", interactive=False, lines=2, max_lines=PROMPT_LINES,
                                     elem_id="prompt")
            with gr.Row(equal_height=True, elem_id="responses"):
                self.left = self._response_box(1, "left")
                self.right = self._response_box(2, "right")
            # Read, choose, then rate: the choice sits right under the two responses.
            self.choice = gr.Radio(CHOICES, label="Which response is better?", elem_id="choice")
            gr.Markdown(KEY_MAP, elem_id="key-map")
            self.ratings_left, self.ratings_right = self._ratings_grid()
            # then harm and a rationale, if any, and submit: the form in the order of the work
            self.flags = gr.CheckboxGroup(list(HARM_CATEGORIES), label="Harm categories (tick any that apply "
                                          "to either response: a tick sends it to the safety reviewers)",
                                          elem_id="harm-flags")
            self.rationale = gr.Textbox(label="Rationale (optional)", lines=2, max_lines=8,
                                        elem_id="rationale")
            with gr.Row(elem_id="annotate-actions"):
                self.submit_btn = gr.Button("Submit  [Enter]", variant="primary",
                                            elem_id="submit-vote")
                self.skip_btn = gr.Button("Skip: can't judge  [s]", elem_id="skip-item")
                self.undo_btn = gr.Button("Undo last submission  [u]", elem_id="undo-vote")
                self.clear_btn = gr.Button("Clear ratings", elem_id="clear-ratings")
            self.status = gr.Markdown("", elem_id="annotate-status")

    @staticmethod
    def _response_box(number: int, side: str) -> gr.Textbox:
        return gr.Textbox(label=f"Response {number}", interactive=False, lines=6, max_lines=RESPONSE_LINES,
                          elem_id=f"response-{side}")

    @staticmethod
    def _ratings_grid() -> tuple[list[gr.Radio], list[gr.Radio]]:
        """Aspects as rows (name and one line on what it means), Response 1 and Response 2
        as two columns of 1-5 buttons."""
        left, right = [], []
        with gr.Column(elem_id="ratings"):
            with gr.Row(elem_classes="rate-row rate-head"):
                gr.Markdown("**Ratings** (1 poor - 5 excellent; unrated is recorded as missing)",
                            elem_classes="rate-aspect")
                gr.Markdown("**Response 1**", elem_classes="rate-col")
                gr.Markdown("**Response 2**", elem_classes="rate-col")
            for a in ASPECTS:
                with gr.Row(elem_classes="rate-row", elem_id=f"rate-row-{a}"):
                    gr.Markdown(f"**{a}** <span class='rate-help'>{ASPECT_HELP[a]}</span>",
                                elem_classes="rate-aspect")
                    for number, side, column in ((1, "left", left), (2, "right", right)):
                        column.append(gr.Radio(
                            [1, 2, 3, 4, 5], value=None, label=f"{a}, response {number}",
                            show_label=False, elem_id=f"rate-{side}-{a}",
                            elem_classes="rate-cell rate-col"))
        return left, right

    @property
    def outputs(self) -> list:
        """What changes with the item: the server's answer to load and submit."""
        return [self.handle, self.progress, self.prompt, self.left, self.right, self.status]

    @property
    def page_outputs(self) -> list:
        """The first load's: the item's, and whether the guidelines are open."""
        return self.outputs + [self.guidelines]

    @property
    def form(self) -> list:
        return [self.choice, self.flags, self.rationale, *self.ratings_left, *self.ratings_right]

    def wire(self) -> None:
        # Submit is a browser-side function that posts to the vote route (app_vote explains
        # why it is not a Gradio event). Undo and the page's first load stay Gradio events
        # outside the queue (queue=False: short transactions, where the queue's join and
        # event stream cost more than the work); there an error would mark every output
        # "Error" without its message, so refusals come back in the status line
        # (refusals_in_status).
        self.submit_btn.click(None, [self.handle, *self.form], self.outputs + self.form,
                              js=SUBMIT_JS)
        self.skip_btn.click(None, [self.handle], self.outputs + self.form, js=SKIP_JS)
        self.undo_btn.click(self.undo, None, self.outputs + self.form, api_name="undo",
                            queue=False)
        # A radio cannot be un-clicked: this takes every rating back to "not rated".
        self.clear_btn.click(None, None, [*self.ratings_left, *self.ratings_right],
                             js=CLEAR_RATINGS_JS)
        # Once the annotator works on the item shown, a status about an earlier action is
        # over; in the browser only (`input`: a person's change, not a new item's blank form).
        for part in (self.choice, self.flags, *self.ratings_left, *self.ratings_right):
            part.input(None, None, [self.status], js=CLEAR_STATUS_JS)

    # ---------------------------------------------------------------------- handlers

    @refusals_in_status("page_outputs")
    def on_page_load(self, request: gr.Request) -> list:
        """The first item when an annotator opens the page, with the guidelines open until
        their first vote; nothing for other roles (their page hides this view, and an item
        assigned to them would hold an overlap slot)."""
        user = session_user(self.store, request)
        if user.role not in ANNOTATORS:
            return skips(len(self.page_outputs))
        name, view = self._next(request)
        return self._show(name, view, "") + [
            gr.update(open=view is not None
                      and guidelines_open(votes_in_round(self.store, name, view.item_id)))]

    def load(self, request: gr.Request) -> list:
        return self._show(*self._next(request), "")

    @refusals
    def _next(self, request: gr.Request) -> tuple[str, ItemView | None]:
        name = session_name(request)  # next_item checks the role in its own read
        return name, next_item(self.store, name, self.cfg.overlap, self.cfg.gold_rate,
                               self.cfg.seed, roles=ANNOTATORS, lease_s=self.cfg.lease_s)

    def vote(self, name: str, answer: dict) -> tuple[int, dict]:
        """The vote route's work (app_vote): store `name`'s answer on the item behind the
        answer's handle; returns the HTTP status and what the page shows. Saved: the next
        item. Refused: the status line only, and nothing stored; but when the item went to
        others meanwhile (ItemTaken), the next item too. The vote and the next assignment are
        one transaction, which also checks the user's role and state."""
        try:
            shown = self.handles.lookup(name, answer.get("handle"))
            if shown is None:
                with self.store.read() as s:  # "not allowed" comes first
                    require_user(s, name, ANNOTATORS)
                raise fail("Nothing to submit: no item is loaded (reload the page).")
            item_id, started = shown
            if answer.get("skip") is True:
                view = skip_and_next(self.store, name, item_id, overlap=self.cfg.overlap, gold_rate=self.cfg.gold_rate,
                                     seed=self.cfg.seed, roles=ANNOTATORS, lease_s=self.cfg.lease_s)
                return 200, {"saved": True, **dict(zip(SHOWN, self._show(name, view, SKIPPED)))}
            choice, ratings = answer.get("choice"), answer.get("ratings")
            if choice is None:
                raise fail("Choose first: 1 better, 2 better, tie or both bad.")
            n = len(ASPECTS)
            if not isinstance(ratings, list) or len(ratings) != 2 * n:
                raise fail(f"ratings: must be a list of {2 * n} values (1-5 or unset)")
            cfg = self.cfg
            _, view = submit_and_next(
                self.store, name, item_id, choice, aspects_left=dict(zip(ASPECTS, ratings[:n])),
                aspects_right=dict(zip(ASPECTS, ratings[n:])),
                harm_flags=answer.get("flags") or (), rationale=answer.get("rationale") or "",
                started_at=started, overlap=cfg.overlap, gold_rate=cfg.gold_rate, seed=cfg.seed,
                roles=ANNOTATORS, lease_s=cfg.lease_s)
        except ItemTaken as e:
            after = "This is your next item." if e.next_view else "Nothing else is left for you."
            status = refused(f"{e}. {after}", lead="**Not saved:** ")
            return 409, {"saved": False, "new_item": True,
                         **dict(zip(SHOWN, self._show(name, e.next_view, status)))}
        except PermissionError as e:
            return 403, {"saved": False, "status": refused(e)}
        except (gr.Error, CollectError) as e:
            return 409, {"saved": False, "status": refused(e)}
        undo_min = self.cfg.undo_window_s / 60
        status = f"{SAVED}; **Undo** [u] takes it back within {undo_min:g} min."
        return 200, {"saved": True, **dict(zip(SHOWN, self._show(name, view, status)))}

    @refusals_in_status("outputs", "form")
    def undo(self, request: gr.Request) -> list:
        """Take back the last vote and show its item again, with the answer filled in."""
        user = session_user(self.store, request, ANNOTATORS)
        vote = undo_last(self.store, user.name, self.cfg.undo_window_s)
        view = next_item(self.store, user.name, self.cfg.overlap, self.cfg.gold_rate,
                         self.cfg.seed, lease_s=self.cfg.lease_s)
        if view is None or view.item_id != vote.item_id:
            return self._show(user.name, view, "Undone; change your answer when the item "
                              "comes back.") + self._answer(None)
        left, right = (vote.aspects_b, vote.aspects_a) if vote.swapped else \
            (vote.aspects_a, vote.aspects_b)
        answer = {"choice": shown_choice(vote.choice, vote.swapped), "flags": vote.harm_flags,
                  "rationale": vote.rationale, "left": left, "right": right}
        return self._show(user.name, view, "Undone: your previous answer is filled in; "
                          "change it and submit again.") + self._answer(answer)

    # ---------------------------------------------------------------------- outputs

    def _show(self, user: str, view: ItemView | None, status: str) -> list:
        """The outputs for `view` (None: nothing left), with a fresh handle for its item."""
        if view is None:
            return [None, ALL_DONE_HTML, "", "", "", status]
        return [self.handles.issue(user, view.item_id), progress_html(view.done, view.total, self.cfg.lease_s),
                view.prompt, view.left, view.right, status]

    @staticmethod
    def _answer(answer: dict | None) -> list:
        """The form's values: a previous answer (undo), or the blank form."""
        answer = answer or {}
        left, right = answer.get("left") or {}, answer.get("right") or {}
        return [answer.get("choice"), answer.get("flags", []), answer.get("rationale", ""),
                *(left.get(a) for a in ASPECTS), *(right.get(a) for a in ASPECTS)]
