"""The `rlhf` command line (cli/main.py). It sits on top: it imports the stages and demo/, and
no stage imports it."""
