"""Shared fixtures: one small mini corpus per test session."""

import os

import pytest

# Nothing is ever fetched from a model hub: tests use local models only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def mini_corpus(tmp_path_factory):
    """A small mini corpus (MSP-Podcast v1.11 layout), built once per session."""
    from data_prep.mini_corpus import generate_mini_corpus

    out = tmp_path_factory.mktemp("mini_corpus")
    generate_mini_corpus(out, seed=7, n_turns=96)
    return out
