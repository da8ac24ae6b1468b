"""rlhf-loop: eval stage."""
