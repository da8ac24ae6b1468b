"""`rlhf sweep`: hyperparameter trials of a stage on its held-out metric (study.py)."""
