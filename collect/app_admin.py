"""The admin's page: progress per annotation round and per annotator, the agreement dashboard (naming the annotators
to look at), the export to preference pairs, and the accounts (create, disable, enable, reset a password).

Admins only: the logic functions used here do not check roles themselves, so every handler
checks first (session_user with ADMINS). The export path is the server's setting; the client
cannot name a file.
"""
from __future__ import annotations

import math
import time

import gradio as gr

from .app_common import ADMINS, AppConfig, md_text, refusals, refused, session_user, skips
from .assign import admin_progress
from .export import export_preferences
from .store import ROLES, CollectError, Store
from .summary import agreement_summary
from .users import activate, add_user, deactivate, list_users, reset_password, set_role

# Votes on regular items and gold checks (votes on gold items) are counted apart, in both tables.
PROGRESS_HEADERS = ["annotator", "role", "active", "regular votes", "gold checks", "open", "last submit"]
ROUND_HEADERS = ["round", "items", "complete", "in progress", "untouched", "regular votes"]
AGREEMENT_HEADERS = ["question", "method", "value", "95% CI", "Landis-Koch", "interval alpha [95% CI]", "rated"]
USER_HEADERS = ["name", "role", "active", "created"]


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def _num(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def round_rows(prog: dict) -> list[list]:
    return [[r["round"], r["items"], r["complete"], r["in_progress"], r["untouched"], r["votes"]]
            for r in prog["rounds"]]


def progress_rows(prog: dict) -> list[list]:
    return [[a["annotator"], a["role"], a["active"], a["done"], a["gold_done"], a["open"],
             _when(a["last_submit"])] for a in prog["annotators"]]


def agreement_rows(summary: dict) -> list[list]:
    """One row per question: the choice (per item), then each 1-5 aspect (per response, two per
    item). method/value treat the answers as categories (Fleiss' kappa, or Krippendorff's nominal
    alpha where items have different numbers of votes); for the ratings, interval alpha also
    counts how far apart two ratings are (a 4 against a 5 disagrees less than a 1 against a 5)."""
    questions = [("choice", summary["choice"])] + list(summary["aspects"].items())

    def interval(r: dict) -> str:
        a = (r.get("alpha") or {}).get("interval")
        return f"{_num(a['value'])} [{_num(a['ci'][0])}, {_num(a['ci'][1])}]" if a else "-"

    return [[name, r["method"], _num(r["value"]), f"[{_num(r['ci'][0])}, {_num(r['ci'][1])}]",
             r["band"], interval(r), f"{r['n_items']} {'items' if name == 'choice' else 'responses'}"]
            for name, r in questions if r is not None]


def flagged_text(summary: dict) -> str:
    if not summary["flagged"]:
        return "No annotator is flagged."
    return "**Annotators to look at:**\n\n" + "\n".join(
        f"- **{md_text(n)}**: {md_text('; '.join(summary['annotators'][n]['why']))}"
        for n in summary["flagged"])


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def items_text(prog: dict) -> str:
    it, votes = prog["items"], prog["votes"]
    return (f"{_count(it['regular'], 'regular item')}: {it['complete']} with >= {prog['overlap']} votes, "
            f"{it['in_progress']} in progress, {it['untouched']} untouched; {_count(it['gold'], 'gold item')}. "
            f"Active votes: {votes['regular']} on regular items (the tables' regular votes) and "
            f"{_count(votes['gold'], 'gold check')} (votes on gold items, counted apart).")


class AdminView:
    def __init__(self, store: Store, cfg: AppConfig):
        self.store, self.cfg = store, cfg

    def build(self) -> None:
        with gr.Column(elem_id="admin-panel"):
            self.refresh_btn = gr.Button("Refresh")
            gr.Markdown("### Progress")
            self.items = gr.Markdown("", elem_id="admin-items")
            self.rounds = gr.Dataframe(headers=ROUND_HEADERS, interactive=False,
                                       label="per annotation round (regular items)", elem_id="admin-rounds")
            self.progress = gr.Dataframe(headers=PROGRESS_HEADERS, interactive=False,
                                         label="per annotator", elem_id="admin-progress")
            gr.Markdown("### Agreement")
            self.agreement = gr.Dataframe(headers=AGREEMENT_HEADERS, interactive=False,
                                          elem_id="admin-agreement")
            self.flagged = gr.Markdown("", elem_id="admin-flagged")
            gr.Markdown("### Export preference pairs")
            with gr.Row():
                self.min_agreement = gr.Number(0.0, label="minimum agreement", minimum=0.0,
                                               maximum=1.0, step=0.05)
                self.export_btn = gr.Button("Export", variant="primary", elem_id="admin-export")
            self.export_status = gr.Markdown("", elem_id="admin-export-status")
            gr.Markdown("### Accounts")
            self.users = gr.Dataframe(headers=USER_HEADERS, interactive=False,
                                      elem_id="admin-users")
            with gr.Row():
                self.account_name = gr.Textbox(label="account name", max_lines=1,
                                               elem_id="admin-account-name")
                self.account_role = gr.Dropdown(list(ROLES), value="annotator", label="role",
                                                elem_id="admin-account-role")
                self.account_password = gr.Textbox(label="password (new or reset)", max_lines=1,
                                                   type="password",
                                                   elem_id="admin-account-password")
            with gr.Row():
                self.create_btn = gr.Button("Create account", variant="primary",
                                            elem_id="admin-create")
                self.disable_btn = gr.Button("Disable", elem_id="admin-disable")
                self.enable_btn = gr.Button("Enable", elem_id="admin-enable")
                self.reset_btn = gr.Button("Reset password", elem_id="admin-reset")
                self.role_btn = gr.Button("Change role", elem_id="admin-role")
            self.account_status = gr.Markdown("", elem_id="admin-account-status")

    @property
    def outputs(self) -> list:
        return [self.items, self.progress, self.agreement, self.flagged, self.users, self.rounds]

    def wire(self) -> None:
        self.refresh_btn.click(self.refresh, None, self.outputs, api_name="admin_refresh")
        self.export_btn.click(self.export, [self.min_agreement], [self.export_status],
                              api_name="admin_export")
        account_out = [self.account_status, self.users, self.account_password]
        self.create_btn.click(self.create_account, [self.account_name, self.account_role,
                              self.account_password], account_out, api_name="admin_user_add")
        self.disable_btn.click(self.disable_account, [self.account_name], account_out,
                               api_name="admin_user_disable")
        self.enable_btn.click(self.enable_account, [self.account_name], account_out,
                              api_name="admin_user_enable")
        self.reset_btn.click(self.reset_account_password, [self.account_name,
                             self.account_password], account_out, api_name="admin_user_reset")
        self.role_btn.click(self.change_role, [self.account_name, self.account_role],
                            account_out, api_name="admin_user_role")

    # ---------------------------------------------------------------------- handlers

    def on_page_load(self, request: gr.Request) -> list:
        try:
            user = session_user(self.store, request)
        except gr.Error:  # the page's header says why
            return skips(len(self.outputs))
        return self.refresh(request) if user.role in ADMINS else skips(len(self.outputs))

    @refusals
    def refresh(self, request: gr.Request) -> list:
        session_user(self.store, request, ADMINS)
        prog = admin_progress(self.store, self.cfg.overlap)
        summary = agreement_summary(self.store, n_boot=self.cfg.n_boot, seed=self.cfg.seed)
        return [items_text(prog), progress_rows(prog), agreement_rows(summary),
                flagged_text(summary), self.user_rows(), round_rows(prog)]

    def user_rows(self) -> list[list]:
        return [[u.name, u.role, u.active, _when(u.created_at)] for u in list_users(self.store)]

    def _account(self, request: gr.Request, change) -> list:
        """Run change(admin name) -> done message for an admin. A refused change (a weak
        password, an unknown name) is the status line; a caller who is not an active admin
        gets an error, the page's and the API's alike. The password field is cleared either
        way."""
        admin = session_user(self.store, request, ADMINS)
        try:
            done = change(admin.name)
        except CollectError as e:
            return [refused(e), gr.skip(), ""]
        return [done, self.user_rows(), ""]

    @refusals
    def create_account(self, request: gr.Request, name: str, role: str, password: str) -> list:
        def change(admin):
            add_user(self.store, name, role, password, actor=admin)
            return f"Created **{md_text(name)}** ({md_text(role)})."
        return self._account(request, change)

    @refusals
    def disable_account(self, request: gr.Request, name: str) -> list:
        def change(admin):
            if name == admin:
                raise CollectError("an admin cannot disable their own account")
            deactivate(self.store, name, actor=admin)
            return f"Disabled **{md_text(name)}**: their log-in and open sessions are refused."
        return self._account(request, change)

    @refusals
    def enable_account(self, request: gr.Request, name: str) -> list:
        def change(admin):
            activate(self.store, name, actor=admin)
            return f"Enabled **{md_text(name)}**."
        return self._account(request, change)

    @refusals
    def reset_account_password(self, request: gr.Request, name: str, password: str) -> list:
        def change(admin):
            reset_password(self.store, name, password, actor=admin)
            return f"Reset the password of **{md_text(name)}**."
        return self._account(request, change)

    @refusals
    def change_role(self, request: gr.Request, name: str, role: str) -> list:
        def change(admin):
            if name == admin and role not in ADMINS:
                raise CollectError("an admin cannot take away their own admin role")
            set_role(self.store, name, role, actor=admin)
            return f"**{md_text(name)}** is now {md_text(role)}."
        return self._account(request, change)

    @refusals
    def export(self, request: gr.Request, min_agreement: float | None) -> str:
        user = session_user(self.store, request, ADMINS)
        if not self.cfg.export_path:
            raise CollectError("this server has no export path (start it with --run)")
        m = 0.0 if min_agreement is None else float(min_agreement)
        if not 0.0 <= m <= 1.0:
            raise CollectError(f"minimum agreement must be in [0, 1], got {m}")
        stats = export_preferences(self.store, self.cfg.export_path, min_agreement=m,
                                   n_boot=self.cfg.n_boot)
        dropped = ", ".join(f"{k} {n}" for k, n in stats["excluded"].items() if n) or "none"
        return (f"{md_text(user.name)} exported **{stats['n_pairs']} pairs** from "
                f"{stats['n_items']} items to {md_text(stats['path'])} (not exported: "
                f"{md_text(dropped)}).")
