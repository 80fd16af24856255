"""`python -m hf_condense.push`, also under `accelerate launch -m`: the same command as `hf-condense push`."""

import sys

from .cli.push import main

if __name__ == "__main__":
    sys.exit(main(prog="hf_condense.push"))
