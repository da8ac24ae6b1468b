"""rlhf-loop: collect stage."""
