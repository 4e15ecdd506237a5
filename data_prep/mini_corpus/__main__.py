"""``python -m data_prep.mini_corpus``: see :func:`data_prep.mini_corpus.main`."""

from data_prep.mini_corpus import main
from ser.cli import exit_with

exit_with("data_prep.mini_corpus", main, interrupted="the corpus is not marked complete; "
          "run the same command again to rebuild it")
