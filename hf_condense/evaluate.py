"""`python -m hf_condense.evaluate`, also under `accelerate launch -m`: the same command as `hf-condense evaluate`."""

import sys

from .cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main(prog="hf_condense.evaluate"))
