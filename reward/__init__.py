"""rlhf-loop: reward stage. `from reward import load_scorer` stays light: torch and transformers
load on the first call."""


def load_scorer(*args, **kwargs):
    """reward.score.load_scorer(path, device=None, batch_size=64) -> Scorer (see there)."""
    from reward.score import load_scorer as _load_scorer

    return _load_scorer(*args, **kwargs)
