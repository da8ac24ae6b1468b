"""rlhf-loop: rl stage."""
