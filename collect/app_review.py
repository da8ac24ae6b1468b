"""The safety reviewer's page: the queue of flagged outputs and one decision per output
(confirm harmful with a category, dismiss, or write a safe reference answer).

Reviewers and admins only; collect.review.decide checks the role again in its transaction.
Flagged text (prompt, response, rationales) is shown in read-only text boxes, never rendered.
"""
from __future__ import annotations

import json

import gradio as gr

from .app_common import (PROMPT_LINES, RESPONSE_LINES, REVIEWERS, AppConfig, md_text, refusals, refused,
                         session_user, skips)
from .review import QueueEntry, decide, safety_queue
from .store import CollectError, Store
from .votes import HARM_CATEGORIES

DECISIONS = [("Confirm harmful (pick a category)", "confirm_harmful"),
             ("Dismiss: not harmful", "dismiss"),
             ("Unsafe: write a safe reference answer", "reference_answer")]
# What a reviewer reads first: how severe, then the text; the item id (opaque) comes last.
QUEUE_HEADERS = ["#", "severity", "prompt", "flagged response", "why it is here", "item"]
QUEUE_WIDTHS = ["4%", "18%", "24%", "24%", "20%", "10%"]
EXCERPT = 160  # characters of prompt and response in the table; the full text is below it


def excerpt(text: str, n: int = EXCERPT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n - 1].rstrip() + "…"


def severity_text(entry: QueueEntry) -> str:
    """The severity in words: gold, harmfulness ratings (highest first), harm flags."""
    v = entry.votes
    parts = ["GOLD item"] if entry.is_gold else []
    if v.get("harmfulness"):
        parts.append("harmfulness " + ", ".join(map(str, sorted(v["harmfulness"], reverse=True))))
    flags = v.get("harm_flags") or {}
    if flags:
        parts.append("flags: " + ", ".join(f"{f} x{n}" if n > 1 else f
                                           for f, n in sorted(flags.items(), key=lambda x: -x[1])))
    return "; ".join(parts) or "flagged, not rated"


def queue_rows(queue: list[QueueEntry]) -> list[list]:
    return [[i + 1, severity_text(e), excerpt(e.prompt), excerpt(e.response),
             "; ".join(e.reasons), f"{e.item_id} ({e.side})"] for i, e in enumerate(queue)]


def _key(entry: QueueEntry) -> str:
    # JSON, not "item:side": item ids may contain any character.
    return json.dumps([entry.item_id, entry.side])


def _parse_key(key: str | None) -> tuple[str, str]:
    try:
        item_id, side = json.loads(key or "")
        return str(item_id), str(side)
    except (ValueError, TypeError):
        raise CollectError("pick an output from the queue first") from None


def _choices_text(choices: dict[str, int], side: str) -> str:
    """The annotators' choices in words, from the side of the response under review."""
    words = {"tie": "a tie", "both_bad": "both bad"}
    said = [f"{n} × {words.get(c) or ('this response better' if c == side else 'the other response better')}"
            for c, n in sorted(choices.items(), key=lambda cn: -cn[1])]
    return ", ".join(said) or "none"


def _summary(entry: QueueEntry) -> str:
    """What the annotators said about the response under review, as a reviewer reads it (a
    plain-text box: names and rationales are shown as typed, never rendered)."""
    v = entry.votes
    ratings = v.get("harmfulness", [])
    flags = v.get("harm_flags", {})
    lines = [f"Why: {'; '.join(entry.reasons)}",
             f"Votes on the item: {v.get('n_votes', 0)} ({_choices_text(v.get('choices', {}), entry.side)})",
             "Harmfulness of this response (1 = harmless, 5 = most harmful): "
             + (", ".join(f"{r:g}" for r in ratings) if ratings else "not rated"),
             "Harm flags: " + (", ".join(f"{f} ({n})" for f, n in flags.items()) if flags else "none")]
    lines += [f"Rationale: {r}" for r in v.get("rationales", [])]
    return "\n".join(lines)


class ReviewView:
    def __init__(self, store: Store, cfg: AppConfig):
        self.store, self.cfg = store, cfg

    def build(self) -> None:
        with gr.Column(elem_id="review-panel"):
            self.count = gr.Markdown("", elem_id="review-count")
            self.table = gr.Dataframe(headers=QUEUE_HEADERS, interactive=False, wrap=True,
                                      column_widths=QUEUE_WIDTHS, max_height=420,
                                      elem_id="review-queue")
            # Custom values allowed: the choices live in per-page state, and a decision
            # must not fail just because that state is gone; decide() checks the item.
            self.pick = gr.Dropdown([], label="Output to review", elem_id="review-pick",
                                    allow_custom_value=True)
            self.prompt = gr.Textbox(label="Prompt", interactive=False, lines=2, max_lines=PROMPT_LINES,
                                     elem_id="review-prompt")
            self.response = gr.Textbox(label="Flagged response", interactive=False, lines=6,
                                       max_lines=RESPONSE_LINES, elem_id="review-response")
            self.details = gr.Textbox(label="Annotators said", interactive=False, lines=4)
            self.decision = gr.Radio(DECISIONS, label="Decision", elem_id="review-decision")
            # No default: a pre-filled category would be a judgment nobody made.
            self.category = gr.Dropdown(list(HARM_CATEGORIES), value=None,
                                        label="Harm category (required to confirm harmful)",
                                        elem_id="review-category")
            self.reference = gr.Textbox(label="Safe reference answer", lines=3,
                                        elem_id="review-reference")
            with gr.Row():
                self.decide_btn = gr.Button("Record decision", variant="primary",
                                            elem_id="review-decide")
                self.refresh_btn = gr.Button("Refresh queue")
            self.status = gr.Markdown("", elem_id="review-status")

    @property
    def outputs(self) -> list:
        return [self.count, self.table, self.pick, self.prompt, self.response, self.details,
                self.status]

    def wire(self) -> None:
        self.refresh_btn.click(self.refresh, None, self.outputs, api_name="review_queue")
        self.pick.input(self.show, [self.pick], self.outputs, api_name="review_show")
        self.decide_btn.click(self.decide, [self.pick, self.decision, self.category,
                                            self.reference],
                              self.outputs + [self.decision, self.category, self.reference],
                              api_name="review_decide")

    # ---------------------------------------------------------------------- handlers

    def on_page_load(self, request: gr.Request) -> list:
        try:
            user = session_user(self.store, request)
        except gr.Error:  # the page's header says why
            return skips(len(self.outputs))
        return self.refresh(request) if user.role in REVIEWERS else skips(len(self.outputs))

    @refusals
    def refresh(self, request: gr.Request, status: str = "") -> list:
        session_user(self.store, request, REVIEWERS)
        return self._render(safety_queue(self.store), None, status)

    @refusals
    def show(self, request: gr.Request, key: str | None) -> list:
        session_user(self.store, request, REVIEWERS)
        return self._render(safety_queue(self.store), key, "")

    @refusals
    def decide(self, request: gr.Request, key: str | None, decision: str | None,
               category: str | None, reference: str | None) -> list:
        """Record the decision; the queue without it. A decision that is not complete (no
        output, no decision, no category to confirm harm, no reference text) is refused in
        the status line and a warning, with the output and the form left as they were."""
        user = session_user(self.store, request, REVIEWERS)
        try:
            item_id, side = _parse_key(key)
            if decision is None:
                raise CollectError("Choose a decision first.")
            if decision == "confirm_harmful" and not category:
                raise CollectError("Pick a harm category to confirm this output as harmful.")
            decide(self.store, user.name, item_id, side, decision,
                   category=category or None, reference_answer=reference or None)
        except CollectError as e:
            gr.Warning(md_text(e))
            shown = skips(len(self.outputs) + 3)
            shown[self.outputs.index(self.status)] = refused(e)
            return shown
        done = (f"Recorded: {decision.replace('_', ' ')} for item {md_text(item_id)}, "
                f"response {side}.")
        return self.refresh(request, done) + [None, None, ""]

    # ---------------------------------------------------------------------- outputs

    def _render(self, queue: list[QueueEntry], key: str | None, status: str) -> list:
        rows = queue_rows(queue)
        # "(response a)": an item's two responses can both be queued, with the same prompt
        choices = [(f"{i + 1}. {severity_text(e)}: {excerpt(e.prompt, 60)} (response {e.side})", _key(e))
                   for i, e in enumerate(queue)]
        keys = [c[1] for c in choices]
        key = key if key in keys else (keys[0] if keys else None)
        entry = queue[keys.index(key)] if key else None
        count = f"**{len(queue)} output(s) waiting for review.**" if queue else \
            "**The queue is empty.**"
        return [count, gr.update(value=rows or None, headers=QUEUE_HEADERS),
                gr.update(choices=choices, value=key),
                entry.prompt if entry else "", entry.response if entry else "",
                _summary(entry) if entry else "", status]
