"""RATIONALYST's document prefilter: keep the unlabeled documents most similar to the target reasoning task.

The paper selects, before mining, the web documents whose embeddings are close to those of the task's
examples. Two embedders:

* ``hf:<model dir or spec>``: a sentence embedding from a transformers encoder (mean-pooled last hidden states,
  L2-normalised), e.g. a local all-MiniLM-L6-v2 directory. This is the paper's kind of prefilter.
* ``tfidf`` (offline fallback, **a departure**): hashed word-unigram+bigram TF-IDF vectors, L2-normalised. It
  is lexical, not semantic, and needs no model. It is the default when no embedding model is given.

A document's score is its highest cosine similarity to any task example. The ``keep`` highest-scoring
documents are kept, in their original order.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")
HASH_DIM = 2**18


def _features(text: str) -> Counter:
    words = _WORD.findall(text.lower())
    grams = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
    return Counter(int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "little") % HASH_DIM
                   for g in grams)


def tfidf_embed(texts: Sequence[str], corpus: Sequence[str] | None = None) -> np.ndarray:
    """Hashed TF-IDF vectors (dense rows, L2-normalised) of ``texts``; IDF from ``corpus`` (default: ``texts``)."""
    feats = [_features(t) for t in texts]
    ref = feats if corpus is None else [_features(t) for t in corpus]
    df: Counter = Counter()
    for f in ref:
        df.update(f.keys())
    n = len(ref)
    used = sorted({k for f in feats for k in f})
    col = {k: i for i, k in enumerate(used)}
    out = np.zeros((len(texts), len(used)))
    for r, f in enumerate(feats):
        for k, tf in f.items():
            out[r, col[k]] = (1 + math.log(tf)) * (math.log((1 + n) / (1 + df.get(k, 0))) + 1)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1, norms)


def hf_embed(texts: Sequence[str], model: str, batch_size: int = 16) -> np.ndarray:
    """Mean-pooled, L2-normalised last hidden states of a transformers encoder (a raftlab model spec or dir)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from raftlab.models import resolve_model_path
    from raftlab.models.loading import named_damage

    path = resolve_model_path(model)
    with named_damage(path):
        tok = AutoTokenizer.from_pretrained(path)
        net = AutoModel.from_pretrained(path).eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tok(list(texts[start : start + batch_size]), padding=True, truncation=True, max_length=256,
                      return_tensors="pt")
            hidden = net(**enc).last_hidden_state
            mask = enc.attention_mask[..., None].to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            rows.append(torch.nn.functional.normalize(pooled.float(), dim=-1).numpy())
    return np.concatenate(rows) if rows else np.zeros((0, 1))


def similarity_scores(docs: Sequence[str], task_texts: Sequence[str], embedder: str = "tfidf") -> np.ndarray:
    """Each document's highest cosine similarity to any of ``task_texts``."""
    if not task_texts:
        raise ValueError("the prefilter needs task examples to compare documents with")
    if embedder == "tfidf":
        both = tfidf_embed([*docs, *task_texts])
        d, t = both[: len(docs)], both[len(docs):]
    elif embedder.startswith("hf:"):
        d, t = hf_embed(docs, embedder[3:]), hf_embed(task_texts, embedder[3:])
    else:
        raise ValueError(f"unknown embedder {embedder!r}: use 'tfidf' or 'hf:<model>'")
    return (d @ t.T).max(axis=1) if len(docs) else np.zeros(0)


def prefilter(docs: Sequence[tuple[str, str]], task_texts: Sequence[str], keep: int, embedder: str = "tfidf"
              ) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """The ``keep`` documents most similar to the task (original order) and a summary of the scores."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    scores = similarity_scores([t for _, t in docs], task_texts, embedder)
    chosen = sorted(np.argsort(-scores, kind="stable")[:keep].tolist())
    kept = [docs[i] for i in chosen]
    summary = {"embedder": embedder, "candidates": len(docs), "kept": len(kept),
               "min_kept_score": float(scores[chosen].min()) if chosen else None,
               "max_dropped_score": float(np.delete(scores, chosen).max()) if len(chosen) < len(docs) else None}
    return kept, summary
