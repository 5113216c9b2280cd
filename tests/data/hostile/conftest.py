"""The corpus modules are a harness, not tests: tests/test_hostile.py runs them (make_corpus.py would clash
with tests/data/bad/make_corpus.py under doctest collection)."""
collect_ignore = ["make_corpus.py"]
