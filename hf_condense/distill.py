"""`python -m hf_condense.distill`, also under `accelerate launch -m`: the same command as `hf-condense distill`."""

import sys

from .cli.distill import main

if __name__ == "__main__":
    sys.exit(main(prog="hf_condense.distill"))
