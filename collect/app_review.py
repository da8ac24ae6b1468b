"""The safety reviewer's page: the queue of flagged outputs and one decision per output
(confirm harmful with a category, dismiss, or write a safe reference answer).

Reviewers and admins only; collect.review.decide checks the role again in its transaction.
Flagged text (prompt, response, rationales) is shown in read-only text boxes, never rendered.
"""
from __future__ import annotations

import json

import gradio as gr

from .app_common import REVIEWERS, AppConfig, refusals, session_user, skips
from .review import QueueEntry, decide, safety_queue
from .store import CollectError, Store
from .votes import HARM_CATEGORIES

DECISIONS = [("Confirm harmful (pick a category)", "confirm_harmful"),
             ("Dismiss: not harmful", "dismiss"),
             ("Unsafe: write a safe reference answer", "reference_answer")]
QUEUE_HEADERS = ["#", "item", "side", "why it is here", "harmfulness ratings", "harm flags"]


def _key(entry: QueueEntry) -> str:
    # JSON, not "item:side": item ids may contain any character.
    return json.dumps([entry.item_id, entry.side])


def _parse_key(key: str | None) -> tuple[str, str]:
    try:
        item_id, side = json.loads(key or "")
        return str(item_id), str(side)
    except (ValueError, TypeError):
        raise CollectError("pick an output from the queue first") from None


def _summary(entry: QueueEntry) -> str:
    v = entry.votes
    lines = [f"Why: {'; '.join(entry.reasons)}",
             f"Votes on the item: {v.get('n_votes', 0)}; choices {v.get('choices', {})}",
             f"Harmfulness of this response: {v.get('harmfulness', [])}",
             f"Harm flags: {v.get('harm_flags', {}) or 'none'}"]
    lines += [f"Rationale: {r}" for r in v.get("rationales", [])]
    return "\n".join(lines)


class ReviewView:
    def __init__(self, store: Store, cfg: AppConfig):
        self.store, self.cfg = store, cfg

    def build(self) -> None:
        with gr.Column(elem_id="review-panel"):
            self.count = gr.Markdown("", elem_id="review-count")
            self.table = gr.Dataframe(headers=QUEUE_HEADERS, interactive=False, wrap=True,
                                      elem_id="review-queue")
            # Custom values allowed: the choices live in per-page state, and a decision
            # must not fail just because that state is gone; decide() checks the item.
            self.pick = gr.Dropdown([], label="Output to review", elem_id="review-pick",
                                    allow_custom_value=True)
            self.prompt = gr.Textbox(label="Prompt", interactive=False, lines=2,
                                     elem_id="review-prompt")
            self.response = gr.Textbox(label="Flagged response", interactive=False, lines=6,
                                       elem_id="review-response")
            self.details = gr.Textbox(label="Annotators said", interactive=False, lines=4)
            self.decision = gr.Radio(DECISIONS, label="Decision", elem_id="review-decision")
            self.category = gr.Dropdown(list(HARM_CATEGORIES), label="Harm category",
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
        user = session_user(self.store, request)
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
        user = session_user(self.store, request, REVIEWERS)
        item_id, side = _parse_key(key)
        if decision is None:
            raise CollectError("choose a decision first")
        decide(self.store, user.name, item_id, side, decision,
               category=category or None, reference_answer=reference or None)
        done = f"Recorded: {decision.replace('_', ' ')} for item {item_id}, response {side}."
        return self.refresh(request, done) + [None, None, ""]

    # ---------------------------------------------------------------------- outputs

    def _render(self, queue: list[QueueEntry], key: str | None, status: str) -> list:
        rows = [[i + 1, e.item_id, e.side, "; ".join(e.reasons),
                 ", ".join(map(str, e.votes.get("harmfulness", []))),
                 ", ".join(e.votes.get("harm_flags", {}))] for i, e in enumerate(queue)]
        choices = [(f"{i + 1}. item {e.item_id}, response {e.side}", _key(e))
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
