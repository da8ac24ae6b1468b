"""rlhf-loop: reward stage."""
