"""``python -m ephys.pretrain ...`` = ``ephys pretrain ...``: the entry point for ``torchrun -m ephys.pretrain``."""

import sys

from ephys.cli import _register, app


def main() -> None:
    _register()
    app(args=["pretrain", *sys.argv[1:]], prog_name="python -m ephys.pretrain")


if __name__ == "__main__":
    main()
