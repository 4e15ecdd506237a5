"""The README, the docs pages and the YAML comments cite only files that exist in the repository."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP = ("ser", "data_prep", "fusion", "recipes", "hparams", "tests", "bench", "docs", ".ci")
#: A repository path as the text writes it: a top folder, then path parts, ending in a file name.
CITED = re.compile(r"(?<![\w/.<{-])((?:%s)/[\w./-]*\w\.(?:py|md|yaml|sh|json|toml))"
                   % "|".join(re.escape(top) for top in TOP))
#: Paths a command writes (not repository files): results, data, the package, a user's folder.
WRITTEN = ("results/", "data/", "my_model/")
#: Files the text shows as examples of what a user adds (a new system's YAML).
EXAMPLES = {"hparams/system_f.yaml"}
TEXTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "hparams").rglob("*.yaml")])


def cited_paths(text):
    """Repository paths named in ``text``.

    Example
    -------
    >>> cited_paths("see `ser/io/audio.py` and docs/demo.md, not results/demo/fusion/report.md")
    ['ser/io/audio.py', 'docs/demo.md']
    """
    return [path for path in CITED.findall(text) if not path.startswith(WRITTEN) and path not in EXAMPLES]


@pytest.mark.parametrize("path", TEXTS, ids=[str(p.relative_to(ROOT)) for p in TEXTS])
def test_every_cited_file_exists(path):
    text = path.read_text(encoding="utf-8")
    missing = [cited for cited in cited_paths(text)
               if not (ROOT / cited).exists() and not any(ROOT.glob(cited.replace("<", "*")))]
    assert missing == [], f"{path.relative_to(ROOT)} cites files that are not in the repository: {missing}"
