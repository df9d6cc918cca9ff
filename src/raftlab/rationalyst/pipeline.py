"""RATIONALYST stages: mine (extract + fidelity filter), filter (keep helpful rationales), generator data."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from raftlab.backends.base import Backend, SamplingParams
from raftlab.rationalyst.extract import BOT, EOT, Triple, extraction_prompt, faithful, split_triples
from raftlab.rationalyst.scoring import GAMMA, discounted_score
from raftlab.rationalyst.store import StageStore
from raftlab.schema import Example
from raftlab.storage import iter_jsonl


def source_text(example: Example) -> str | None:
    """Unlabeled reasoning text of an example: question + its human or synthetic solution, if it has one."""
    solution = example.rationale or example.meta.get("human_rationale")
    if not solution:
        from raftlab.rationales.oracle import arith_rationale, coinflip_rationale

        solution = arith_rationale(example.question) or coinflip_rationale(example.question)
    if not solution:
        return None
    return f"{example.question.strip()} {solution.strip()} The answer is {example.label}."


def generator_prompt(preceding: str) -> str:
    """Input of the rationale generator: the text so far, then the opening tag."""
    return f"{preceding.strip()} {BOT}"


def generator_target(rationale: str) -> str:
    return f"{rationale.strip()}{EOT}"


def mine(backend: Backend, docs: Iterable[tuple[str, str]], store: StageStore, *, batch_size: int = 4,
         max_new_tokens: int = 384, max_edit_ratio: float = 0.10, progress: bool = True) -> dict[str, int]:
    """Insert rationales into each (doc_id, text) at temperature 0; store annotation, fidelity and triples."""
    from tqdm.auto import tqdm

    store.check_settings("mine", {"model": _backend_id(backend), "max_edit_ratio": max_edit_ratio,
                                  "max_new_tokens": max_new_tokens})
    todo = [(d, t) for d, t in docs if not store.has("mine", d)]
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens, stop=("\nText:",))
    for start in tqdm(range(0, len(todo), batch_size), desc="rationalyst mine", disable=not progress):
        batch = todo[start : start + batch_size]
        outs = backend.generate([extraction_prompt(t) for _, t in batch], params)
        for (doc_id, text), row in zip(batch, outs):
            annotated = row[0].text.strip()
            ok = faithful(text, annotated, max_edit_ratio)
            triples = [t.to_dict() for t in split_triples(annotated)] if ok else []
            store.put("mine", doc_id, {"text": text, "annotated": annotated, "faithful": ok, "triples": triples})
    return _mine_stats(store)


def _mine_stats(store: StageStore) -> dict[str, int]:
    docs = [v for _, v in store.items("mine")]
    return {"docs": len(docs), "faithful": sum(v["faithful"] for v in docs),
            "triples": sum(len(v["triples"]) for v in docs)}


def mined_triples(store: StageStore) -> list[tuple[str, Triple]]:
    return [(f"{doc}#{i}", Triple(**t)) for doc, v in store.items("mine") for i, t in enumerate(v["triples"])]


def filter_triples(backend: Backend, store: StageStore, *, gamma: float = GAMMA, batch_size: int = 8,
                   progress: bool = True) -> dict[str, int]:
    """Score the following segment with and without the rationale; keep iff S(p + r) > S(p)."""
    from tqdm.auto import tqdm

    store.check_settings("filter", {"model": _backend_id(backend), "gamma": gamma})
    todo = [(k, t) for k, t in mined_triples(store) if not store.has("filter", k)]
    for start in tqdm(range(0, len(todo), batch_size), desc="rationalyst filter", disable=not progress):
        batch = todo[start : start + batch_size]
        prompts, conts = [], []
        for _, t in batch:
            prompts += [f"{t.preceding} {BOT}{t.rationale}{EOT}", t.preceding]
            conts += [" " + t.following, " " + t.following]
        scores = backend.score(prompts, conts)
        for i, (key, t) in enumerate(batch):
            with_r = discounted_score(scores[2 * i].token_logprobs, gamma)
            without = discounted_score(scores[2 * i + 1].token_logprobs, gamma)
            store.put("filter", key, {**t.to_dict(), "s_with": with_r, "s_without": without, "keep": with_r > without})
    kept = sum(v["keep"] for _, v in store.items("filter"))
    return {"scored": store.count("filter"), "kept": kept}


def kept_triples(store: StageStore) -> list[Triple]:
    return [Triple(v["preceding"], v["rationale"], v["following"]) for _, v in store.items("filter") if v["keep"]]


def open_store(run_dir: str | Path) -> StageStore:
    return StageStore(Path(run_dir) / "rationalyst.sqlite")


def docs_from_text_file(path: str | Path) -> list[tuple[str, str]]:
    """Unlabeled documents: a ``.jsonl`` file of ``{"id"?, "text"}`` objects, or plain text, one document a line."""
    path = Path(path)
    docs = []
    if path.suffix == ".jsonl":
        for n, row in iter_jsonl(path):
            if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
                raise ValueError(f"{path}:{n}: field 'text' (a non-empty string) is missing")
            docs.append((str(row.get("id", f"{path.stem}-{n}")), row["text"].strip()))
    else:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                docs.append((f"{path.stem}-{n}", line.strip()))
    if not docs:
        raise ValueError(f"{path}: no documents (one per line)")
    return docs


def docs_from_examples(examples: Sequence[Example]) -> list[tuple[str, str]]:
    out = []
    for ex in examples:
        text = source_text(ex)
        if text:
            out.append((ex.id, text))
    return out


def _backend_id(backend: Backend) -> str:
    return str(getattr(backend, "model_name", None) or getattr(backend, "name", type(backend).__name__))


def summary(store: StageStore) -> dict[str, Any]:
    return {"mine": _mine_stats(store), "filter": {"scored": store.count("filter"),
                                                   "kept": len(kept_triples(store))}}
