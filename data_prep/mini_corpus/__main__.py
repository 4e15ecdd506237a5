"""``python -m data_prep.mini_corpus``: see :func:`data_prep.mini_corpus.main`."""

from data_prep.mini_corpus import main

main()
