"""rlhf-loop: core stage."""
