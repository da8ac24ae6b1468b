"""rlhf-loop: demo stage."""
