"""Loading a task's examples from its :class:`~raftlab.tasks.config.TaskConfig`: local files, a seeded pool split,
generated splits, fully synthetic tasks, and the Hugging Face hub."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, TypeVar

from raftlab.schema import Example
from raftlab.tasks.config import SPLITS, SeededSplit, SplitSource, TaskConfig
from raftlab.tasks.datadir import DataNotFoundError, resolve_data_dir
from raftlab.tasks.records import CONVERTERS, TaskDataError, read_files

T = TypeVar("T")


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def seeded_split(items: list[T], split: str, rule: SeededSplit, where: str = "") -> list[T]:
    """The ``split`` part of ``items`` under a seeded shuffle (``rule``: a test fraction or exact sizes), in
    original order. Used for local pools and for hub datasets that have one split."""
    order = list(range(len(items)))
    random.Random(rule.seed).shuffle(order)
    if rule.test_fraction is not None:
        n_test = round(len(order) * rule.test_fraction)
    else:
        assert rule.sizes is not None
        n_test, n_train = int(rule.sizes["test"]), int(rule.sizes["train"])
        if n_train + n_test != len(order):
            raise TaskDataError(f"{where}sizes {n_train}+{n_test} != {len(order)} examples")
    chosen = sorted(order[:n_test]) if split == "test" else sorted(order[n_test:])
    return [items[i] for i in chosen]


def subsample(examples: list[Example], limit: int | None, seed: int) -> list[Example]:
    """A seeded random subset of size ``limit`` in original order (all when ``limit`` is None/large)."""
    if limit is None or limit >= len(examples):
        return examples
    if limit < 0:
        raise ValueError("limit must be >= 0")
    idx = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in idx]


def convert(task: TaskConfig, records: list[dict[str, Any]], split: str, converter: str | None = None,
            args: dict[str, Any] | None = None) -> list[Example]:
    """Records -> Examples with the task's converter (``data.converter``/``data.convert`` unless given)."""
    name = converter or task.data.converter
    if name not in CONVERTERS:
        raise ValueError(f"{task.config_path}: unknown converter {name!r}")
    return CONVERTERS[name](task, records, split, **(task.data.convert if args is None else args))


def _read(task: TaskConfig, root: Path, files: list[str], split: str, source: SplitSource | None = None
          ) -> list[dict[str, Any]]:
    paths = [root / f for f in files]
    for p in paths:
        if not p.is_file():
            raise DataNotFoundError(f"task {task.name!r}: missing file {p} (see {root / 'NOTE.md'})")
    reader = (source.reader if source else None) or task.data.reader
    args = {**task.data.reader_args, **(source.reader_args if source else {})}
    records = read_files(reader, paths, args)
    for i, rec in enumerate(records):
        rec["_index"] = i
        rec["_split"] = split
    return records


def _split_source(task: TaskConfig, split: str) -> SplitSource:
    if split not in task.data.splits:
        raise ValueError(f"{task.config_path}: task {task.name!r} defines no split {split!r} (data.splits)")
    return task.data.splits[split]


def _generated_split(task: TaskConfig, root: Path, split: str, source: SplitSource) -> list[Example]:
    """A split produced by a generator, excluding questions of the other (file-based) split."""
    from raftlab.tasks.synthetic import GENERATORS

    gen = source.generate
    assert gen is not None
    exclude: set[str] = set()
    for other in gen.exclude_splits:
        other_source = _split_source(task, other)
        exclude |= {e.question for e in convert(task, _read(task, root, other_source.files, other, other_source),
                                                other)}
    made = GENERATORS[gen.generator](n=gen.n + len(exclude), seed=gen.seed, task=task, **gen.args)
    out = [e for e in made if e.question not in exclude][: gen.n]
    for i, e in enumerate(out):
        e.id = f"{task.name}-{split}-{i}"
    return out


def load_local(task: TaskConfig, split: str, data_dir: str | Path | None = None, seed: int = 0) -> list[Example]:
    """Every example of ``split`` from local files (or generated with ``seed``, for synthetic tasks)."""
    check_split(split)
    if task.data.synthetic is not None:
        from raftlab.tasks.synthetic import generate_splits

        return generate_splits(task, seed)[split]
    subdir = task.data.dir
    if not subdir:
        raise DataNotFoundError(f"task {task.name!r} has no local data (config: {task.config_path})")
    root = resolve_data_dir(data_dir, subdir) / subdir
    if task.data.pool is not None:
        pool = task.data.pool
        examples = convert(task, _read(task, root, pool.files, "pool"), "pool")
        return seeded_split(examples, split, pool, where=f"{task.config_path}: data.pool: ")
    source = _split_source(task, split)
    if source.generate is not None:
        return _generated_split(task, root, split, source)
    return convert(task, _read(task, root, source.files, split, source), split)


def data_fingerprint(task: TaskConfig, data_dir: str | Path | None = None) -> str | None:
    """A hash of the task's local files (names and contents), or None for a generated task or one whose files
    are not here. A study keys its data stage on it, so new or edited files are never served from a stale split."""
    import hashlib

    if task.data.synthetic is not None or not task.data.dir:
        return None
    try:
        root = resolve_data_dir(data_dir, task.data.dir) / task.data.dir
    except DataNotFoundError:
        return None
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def load_hub(task: TaskConfig, split: str) -> list[Example]:
    """Every example of ``split`` from the Hugging Face hub (the paper's sources), for online users."""
    check_split(split)
    hub = task.hub
    if hub is None:
        raise ValueError(f"task {task.name!r} has no hub source; use Task.load() with local files")
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover
        raise RuntimeError("Task.load_hub needs the 'datasets' package") from exc
    names = hub.splits[split] if isinstance(hub.splits[split], list) else [hub.splits[split]]
    part = "pool" if hub.split is not None else split  # one hub split, divided here
    records: list[dict[str, Any]] = []
    for name in names:
        try:
            ds = datasets.load_dataset(hub.path, hub.name, split=name)
        except Exception as exc:
            raise RuntimeError(f"could not load {hub.path} ({name}) from the Hugging Face hub: {exc}. "
                               "Offline? Use Task.load() with local files (RAFTLAB_DATA_DIR).") from exc
        for row in ds:
            rec = dict(row)
            rec.update(_file=f"hub:{hub.path}:{name}", _index=len(records), _line=len(records), _split=part)
            records.append(rec)
    if hub.convert is not None:
        examples = convert(task, records, part, hub.converter, hub.convert)
    else:
        examples = convert(task, records, part)
    return seeded_split(examples, split, hub.split) if hub.split is not None else examples
