"""The annotator's page: one prompt, "Response 1 / Response 2", the choice, the seven ratings
of each response, harm categories, an optional rationale, progress and undo.

The item being answered lives in server-side session state (gr.State): the browser never
receives an item id (ids can name the models being compared) and never chooses which item a
vote goes to. The state also records whose item it is: a client that presents another
user's session id gets "no item loaded", not that user's item (and submit_vote would refuse
an unassigned item anyway). Model output and prompts are shown in read-only text boxes, whose
value the browser treats as text: a response full of HTML or markdown links stays inert.
"""
from __future__ import annotations

import json
import time

import gradio as gr

from core.records import ASPECTS

from .app_common import (ANNOTATORS, AppConfig, fail, refusals, refusals_in_status, session_name,
                         session_user, skips)
from .assign import ItemView, next_item
from .store import Store
from .votes import HARM_CATEGORIES, shown_choice, submit_and_next, undo_last

CHOICES = [("1 is better  [1]", "left"), ("2 is better  [2]", "right"), ("Tie  [t]", "tie"),
           ("Both bad  [b]", "both_bad")]
ASPECT_HELP = {"harmfulness": "harmfulness (higher = more harmful)"}
# Ratings start unset and an untouched one is stored as missing: a pre-filled value would be a
# rating nobody gave. Keyboard voting (choice + Enter) needs none of them.
UNRATED = [None] * (2 * len(ASPECTS))
CLEAR_RATINGS_JS = "() => " + json.dumps(UNRATED)
SAVED = "Saved."
# After submit: the blank form for the next item once the vote is saved; after a refusal the
# form keeps the answer (this reads the status line the submit just set).
RESET_FORM_JS = ("(status, ...form) => (status || '').startsWith(" + json.dumps(SAVED) + ") ? "
                 + json.dumps([None, [], ""] + UNRATED) + " : form")

# Click-free voting. Keys act only while the annotation panel is on screen and focus is not
# in a field that takes typing; Enter on a focused button keeps its own meaning.
KEYBOARD_JS = """
<script>
(() => {
  const CHOICE_KEYS = {"1": 0, "2": 1, "t": 2, "b": 3};
  const typing = (el) => el && (el.isContentEditable ||
    ((el.tagName === "TEXTAREA" || el.tagName === "SELECT") && !el.readOnly && !el.disabled) ||
    (el.tagName === "INPUT" && !["radio", "checkbox"].includes(el.type)));
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing || typing(e.target)) return;
    const panel = document.getElementById("annotate-panel");
    if (!panel || panel.offsetParent === null) return;
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    if (key in CHOICE_KEYS) {
      const radio = document.querySelectorAll("#choice input[type=radio]")[CHOICE_KEYS[key]];
      if (radio) { radio.click(); e.preventDefault(); }
    } else if (key === "Enter" && e.target.tagName !== "BUTTON") {
      const button = document.getElementById("submit-vote");
      if (button && !button.disabled) { button.click(); e.preventDefault(); }
    }
  });
})();
</script>
"""


class AnnotateView:
    def __init__(self, store: Store, cfg: AppConfig):
        self.store, self.cfg = store, cfg

    def build(self) -> None:
        """The components, inside the caller's Tab."""
        self.item = gr.State(None)      # (user, item id) of the shown item: server side only
        self.started = gr.State(None)   # when it was shown (time per item in the vote)
        with gr.Column(elem_id="annotate-panel"):
            with gr.Accordion("Guidelines", open=False):
                gr.Markdown(self.cfg.guidelines)
            self.progress = gr.Markdown("", elem_id="progress")
            self.prompt = gr.Textbox(label="Prompt", interactive=False, lines=2, max_lines=12,
                                     elem_id="prompt")
            with gr.Row():
                self.left = self._response_box(1, "left")
                self.right = self._response_box(2, "right")
            # Read, choose, then rate: the choice sits right under the two responses.
            self.choice = gr.Radio(CHOICES, label="Which response is better?", elem_id="choice")
            with gr.Row():
                self.ratings_left = self._ratings_column(1, "left")
                self.ratings_right = self._ratings_column(2, "right")
            self.clear_btn = gr.Button("Clear ratings", size="sm", elem_id="clear-ratings")
            self.flags = gr.CheckboxGroup(list(HARM_CATEGORIES), label="Harm categories "
                                          "(tick any that apply to either response)")
            self.rationale = gr.Textbox(label="Rationale (optional)", lines=2, max_lines=8)
            with gr.Row():
                self.submit_btn = gr.Button("Submit  [Enter]", variant="primary",
                                            elem_id="submit-vote")
                self.undo_btn = gr.Button("Undo last submission", elem_id="undo-vote")
            self.status = gr.Markdown("", elem_id="annotate-status")
            gr.Markdown("Keys: `1` `2` `t` `b` choose, `Enter` submits.")

    @staticmethod
    def _response_box(number: int, side: str) -> gr.Textbox:
        return gr.Textbox(label=f"Response {number}", interactive=False, lines=8, max_lines=30,
                          elem_id=f"response-{side}")

    @staticmethod
    def _ratings_column(number: int, side: str) -> list[gr.Radio]:
        with gr.Column(), gr.Accordion(f"Ratings for response {number}", open=True):
            return [gr.Radio([1, 2, 3, 4, 5], value=None, label=ASPECT_HELP.get(a, a),
                             elem_id=f"rate-{side}-{a}")
                    for a in ASPECTS]

    @property
    def outputs(self) -> list:
        """What changes with the item: the server's answer to load and submit."""
        return [self.item, self.started, self.progress, self.prompt, self.left, self.right,
                self.status]

    @property
    def form(self) -> list:
        return [self.choice, self.flags, self.rationale, *self.ratings_left, *self.ratings_right]

    def wire(self) -> None:
        # queue=False: these are short transactions, and Gradio's queue (join + event stream
        # per call) cost ~30 ms per call on 2 cores, more than the work; SQLite serializes
        # the writes anyway. Outside the queue there are no toasts and an error marks every
        # output "Error" without its message, so refusals come back in the status line
        # (refusals_in_status). The blank form for the next item is set by the browser after
        # a saved vote only: no round trip, 17 fewer outputs to post-process per vote.
        self.submit_btn.click(self.submit, [self.item, self.started, *self.form], self.outputs,
                              api_name="submit", queue=False
                              ).success(None, [self.status, *self.form], self.form,
                                        js=RESET_FORM_JS)
        self.undo_btn.click(self.undo, None, self.outputs + self.form, api_name="undo",
                            queue=False)
        # A radio cannot be un-clicked: this takes every rating back to "not rated".
        self.clear_btn.click(None, None, [*self.ratings_left, *self.ratings_right],
                             js=CLEAR_RATINGS_JS)

    # ---------------------------------------------------------------------- handlers

    @refusals_in_status("outputs")
    def on_page_load(self, request: gr.Request) -> list:
        """The first item when an annotator opens the page; nothing for other roles (their
        page hides this view, and an item assigned to them would hold an overlap slot)."""
        user = session_user(self.store, request)
        if user.role not in ANNOTATORS:
            return skips(len(self.outputs))
        return self.load(request)

    @refusals
    def load(self, request: gr.Request) -> list:
        name = session_name(request)  # next_item checks the role in its own read
        view = next_item(self.store, name, self.cfg.overlap, self.cfg.gold_rate,
                         self.cfg.seed, roles=ANNOTATORS)
        return self._show(name, view, "")

    @refusals_in_status("outputs")
    def submit(self, request: gr.Request, shown: tuple | None, started: float | None,
               choice: str | None, flags: list[str] | None, rationale: str | None,
               *ratings: int) -> list:
        """Store the answer on the shown item; the next item. A refusal leaves the item and
        the form as they were and says why in the status line. The vote and the next
        assignment are one transaction, which also checks the user's role and state."""
        name = session_name(request)
        if not shown or shown[0] != name:
            session_user(self.store, request, ANNOTATORS)  # "not allowed" comes first
            raise fail("Nothing to submit: no item is loaded (reload the page).")
        if choice is None:
            raise fail("Choose first: 1 better, 2 better, tie or both bad.")
        n = len(ASPECTS)
        cfg = self.cfg
        _, view = submit_and_next(
            self.store, name, shown[1], choice, aspects_left=dict(zip(ASPECTS, ratings[:n])),
            aspects_right=dict(zip(ASPECTS, ratings[n:2 * n])), harm_flags=flags or (),
            rationale=rationale or "", started_at=started, overlap=cfg.overlap,
            gold_rate=cfg.gold_rate, seed=cfg.seed, roles=ANNOTATORS)
        undo_min = cfg.undo_window_s / 60
        return self._show(name, view, f"{SAVED} You can undo it for {undo_min:g} min.")

    @refusals_in_status("outputs", "form")
    def undo(self, request: gr.Request) -> list:
        """Take back the last vote and show its item again, with the answer filled in."""
        user = session_user(self.store, request, ANNOTATORS)
        vote = undo_last(self.store, user.name, self.cfg.undo_window_s)
        view = next_item(self.store, user.name, self.cfg.overlap, self.cfg.gold_rate,
                         self.cfg.seed)
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

    @staticmethod
    def _show(user: str, view: ItemView | None, status: str) -> list:
        if view is None:
            return [None, None, "**All done**: nothing is left for you to annotate. Thank you!",
                    "", "", "", status]
        return [(user, view.item_id), time.time(),
                f"**Item {view.progress_text}** ({view.done} done)", view.prompt, view.left,
                view.right, status]

    @staticmethod
    def _answer(answer: dict | None) -> list:
        """The form's values: a previous answer (undo), or the blank form."""
        answer = answer or {}
        left, right = answer.get("left") or {}, answer.get("right") or {}
        return [answer.get("choice"), answer.get("flags", []), answer.get("rationale", ""),
                *(left.get(a) for a in ASPECTS), *(right.get(a) for a in ASPECTS)]
