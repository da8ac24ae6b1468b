"""The whole loop on a user's own model and data: `rlhf loop` (loop.run), on top of the stages."""
