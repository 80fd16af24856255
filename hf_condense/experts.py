"""`python -m hf_condense.experts`, also under `accelerate launch -m`: the same command as `hf-condense experts`."""

import sys

from .cli.experts import main

if __name__ == "__main__":
    sys.exit(main(prog="hf_condense.experts"))
