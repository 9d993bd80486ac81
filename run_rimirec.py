"""Train and test a model through the recbole_rimirec plugin (the same as the ``recbole-rimirec`` command).

Examples:
    python run_rimirec.py                                  # RimiRec on ml-100k
    python run_rimirec.py -m SASRec --out r.json           # a RecBole model, result as JSON
    python run_rimirec.py --help                           # models, data sets and main keys
"""

import sys

from recbole_rimirec.cli import main

if __name__ == "__main__":
    sys.exit(main())
