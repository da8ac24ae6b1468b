"""`python -m cli STAGE ...`, the form `accelerate launch ... -m cli` starts on every process."""
from cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
