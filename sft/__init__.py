"""rlhf-loop: sft stage."""
