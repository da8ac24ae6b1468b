"""What a gold judge provides: a scorer that knows the truth of a domain, for measurement only.

A gold judge is never a training reward. Stages that can use one take it as an argument (eval's
gold columns, the reward model's accuracy against gold, simulated annotators) and run without
it. The demo's oracle (the module demo.oracle) is one; any object with these methods is another.

Optional: `terms(prompt, response) -> dict[str, float]`, overall split into additive parts (the
fact, manners, length, ...) that sum to score()["overall"]. With it, eval reports where each
policy's gold gain over SFT comes from (eval.gold.gain_decomposition).
"""
from __future__ import annotations

from typing import Protocol


class Judge(Protocol):
    def recognises(self, prompt: str) -> bool:
        """True when the judge knows the right answers to this prompt."""

    def score(self, prompt: str, response: str) -> dict:
        """The seven aspects (core.records.ASPECTS, 1-5; harmfulness: higher = more harmful) and
        "overall", a float in [1, 5]."""

    def fact_correct(self, prompt: str, response: str) -> bool | None:
        """The response states the right fact; None when the prompt has no fact to check."""

    def is_harmful(self, prompt: str, response: str) -> bool:
        """The response gives harmful help."""

    def is_refusal(self, prompt: str, response: str) -> bool:
        """The response declines (and gives no harmful help)."""
