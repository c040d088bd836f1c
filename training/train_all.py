"""One command to reproduce EditKit's default models (see training/README.md and training/emoji/train_all.py):

    /usr/bin/python3 training/train_all.py --out models/ [--device cuda] [--budget-minutes N] [--preset gpu|cpu|smoke]
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "emoji"))

from train_all import main  # noqa: E402  (training/emoji/train_all.py)

if __name__ == "__main__":
    main()
