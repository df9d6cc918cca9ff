"""Reading source files into records (dicts), and converting records into :class:`Example` objects.

Readers know file formats (jsonl, json, tsv/csv, ASDiv XML, WiC pairs, raw TREC). Converters know
task schemas; they are shared by the local loader and the Hugging Face hub loader (hub rows are
records too). Every error names the file, the line (or item index) and the field.
"""

from __future__ import annotations

import csv
import html
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from pathlib import Path
from string import Formatter
from typing import Any

from raftlab.registry import Registry
from raftlab.schema import Example
from raftlab.storage import iter_jsonl
from raftlab.tasks.answers import canonical_number
from raftlab.tasks.config import TaskConfig as Task

Record = dict[str, Any]

READERS: Registry[Callable[..., list[Record]]] = Registry("reader")
CONVERTERS: Registry[Callable[..., list[Example]]] = Registry("converter")
CLEANERS: Registry[Callable[[str], str]] = Registry("cleaner")


class TaskDataError(ValueError):
    """A source record could not be turned into an Example (message names file, line and field)."""


def _where(rec: Record) -> str:
    return f"{rec.get('_file', '<hub>')}:{rec.get('_line', rec.get('_index', '?'))}"


def reader(name: str):
    return READERS.register(name)


def converter(name: str):
    return CONVERTERS.register(name)


def cleaner(name: str):
    return CLEANERS.register(name)


# ----------------------------------------------------------------------------- readers


@reader("jsonl")
def jsonl_records(path: Path) -> list[Record]:
    return [{**rec, "_line": lineno} for lineno, rec in iter_jsonl(path, error=TaskDataError, objects=True)]


@reader("json")
def read_json(path: Path, key: str | None = None) -> list[Record]:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if key is not None:
        data = data[key]
    if not isinstance(data, list):
        raise TaskDataError(f"{path}: expected a JSON list{' under ' + repr(key) if key else ''}")
    for i, rec in enumerate(data):
        rec["_line"] = f"item {i}"
    return data


@reader("tsv")
def read_tsv(path: Path, columns: list[str] | None = None, header: bool = True,
             delimiter: str = "\t", drop_last_partial: bool = False, encoding: str = "utf-8") -> list[Record]:
    """Delimited text. ``columns`` names the fields (a header row, if any, is then skipped); ``drop_last_partial``
    drops the final row of a file known to be cut mid-row."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with open(path, encoding=encoding, newline="") as fh:
        rows = list(csv.reader(fh, delimiter=delimiter, quoting=quoting))
    start = 1 if header else 0
    if columns:
        names = list(columns)
    elif header and rows:
        names = rows[0]
    elif columns:
        names = list(columns)
    else:
        raise TaskDataError(f"{path}: tsv/csv reader needs header=true or columns")
    if drop_last_partial and len(rows) > start:
        rows = rows[:-1]
    out = []
    for lineno, row in enumerate(rows[start:], start + 1):
        if not row:
            continue
        if len(row) != len(names):
            raise TaskDataError(f"{path}:{lineno}: expected {len(names)} fields {names}, found {len(row)}")
        rec = dict(zip(names, row))
        rec["_line"] = lineno
        out.append(rec)
    return out


@reader("csv")
def read_csv(path: Path, **kwargs: Any) -> list[Record]:
    return read_tsv(path, delimiter=",", **kwargs)


@reader("asdiv_xml")
def read_asdiv_xml(path: Path) -> list[Record]:
    root = ET.parse(path).getroot()
    out = []
    for i, prob in enumerate(root.iter("Problem")):
        rec: Record = {k: v for k, v in prob.attrib.items()}
        for child in prob:
            rec[child.tag] = (child.text or "").strip()
        rec["_line"] = f"Problem {rec.get('ID', i)}"
        out.append(rec)
    return out


@reader("wic")
def read_wic(data_path: Path, gold_path: Path) -> list[Record]:
    """WiC ``*.data.txt`` (word, PoS, idx1-idx2, sentence1, sentence2) paired with ``*.gold.txt`` (T/F)."""
    data = data_path.read_text(encoding="utf-8").splitlines()
    gold = gold_path.read_text(encoding="utf-8").splitlines()
    if len(data) != len(gold):
        raise TaskDataError(f"{data_path}: {len(data)} lines but {gold_path.name} has {len(gold)}")
    out = []
    for lineno, (line, g) in enumerate(zip(data, gold), 1):
        parts = line.split("\t")
        if len(parts) != 5:
            raise TaskDataError(f"{data_path}:{lineno}: expected 5 tab-separated fields, found {len(parts)}")
        word, pos, idx, s1, s2 = parts
        out.append({"word": word, "pos": pos, "idx": idx, "sentence1": s1, "sentence2": s2,
                    "label": g.strip(), "_line": lineno})
    return out


@reader("trec_raw")
def read_trec_raw(path: Path) -> list[Record]:
    """Original TREC lines ``COARSE:fine question`` (latin-1)."""
    out = []
    for lineno, line in enumerate(path.read_text(encoding="latin-1").splitlines(), 1):
        if not line.strip():
            continue
        m = re.match(r"([A-Z]+):(\S+)\s+(.*)$", line)
        if not m:
            raise TaskDataError(f"{path}:{lineno}: expected 'COARSE:fine question'")
        out.append({"coarse": m.group(1), "fine": m.group(2), "text": m.group(3).strip(), "_line": lineno})
    return out


def read_files(kind: str, paths: list[Path], args: dict[str, Any] | None = None) -> list[Record]:
    """Records of all files of one split; multi-file readers (wic) get all paths at once."""
    fn = READERS.get(kind)  # KeyError naming the known readers
    args = dict(args or {})
    if kind == "wic":
        recs = fn(*paths)
        for r in recs:
            r["_file"] = paths[0].name
        return recs
    out: list[Record] = []
    for p in paths:
        recs = fn(p, **args)
        for r in recs:
            r["_file"] = p.name
        out.extend(recs)
    return out


# ----------------------------------------------------------------------------- cleaners


@cleaner("agnews")
def clean_agnews(text: str) -> str:
    """AG News escapes: ``#36;`` -> ``$``, ``\\`` line breaks, HTML entities."""
    text = re.sub(r"\s?#(\d+);", lambda m: chr(int(m.group(1))), text)
    text = text.replace("\\", " ")
    text = html.unescape(text)
    return "\n".join(re.sub(r"\s+", " ", line).strip() for line in text.split("\n"))


@cleaner("gsm8k_solution")
def clean_gsm8k_solution(text: str) -> str:
    """GSM8K solution without calculator annotations ``<<3*4=12>>`` and the final ``#### N`` line."""
    text = re.sub(r"<<[^>]*>>", "", text)
    return re.sub(r"\n?####.*$", "", text.strip(), flags=re.DOTALL).strip()


@cleaner("strip_quotes")
def clean_strip_quotes(text: str) -> str:
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] == '"':
        t = t[1:-1].strip()
    return t


def apply_cleaners(text: str, names: Iterable[str]) -> str:
    for n in names:
        text = CLEANERS[n](text)
    return text


# ----------------------------------------------------------------------------- converters


_FMT = Formatter()


def fill(template: str, rec: Record, field_desc: str) -> str:
    """``template.format(**rec)`` with an error naming the record and the missing field."""
    try:
        return _FMT.vformat(template, (), rec)
    except (KeyError, IndexError, TypeError) as exc:
        raise TaskDataError(f"{_where(rec)}: cannot build {field_desc} from {template!r}: missing field {exc}") from exc


def _make_id(task: Task, split: str, rec: Record, id_template: str | None) -> str:
    if id_template:
        return fill(id_template, rec, "id")
    return f"{task.name}-{split}-{rec['_index']}"


@converter("template")
def convert_template(task: Task, records: list[Record], split: str, *, question: str, label: str,
                     id: str | None = None, label_map: dict[str, str] | None = None,
                     label_regex: str | None = None, options: list[str] | None = None,
                     rationale: str | None = None, clean: list[str] | None = None,
                     rationale_clean: list[str] | None = None,
                     skip_unparseable_labels: bool = False, meta: dict[str, str] | None = None) -> list[Example]:
    """Generic record -> Example: ``question``/``label``/``id`` are ``str.format`` templates over the record.

    Choice tasks map the raw label through ``label_map`` (raw -> letter) and use the task's verbalizers
    as options, unless ``options`` lists per-record option templates (e.g. WinoGrande's option1/option2).
    Number tasks apply ``label_regex`` (first group) and canonicalise. ``skip_unparseable_labels``
    drops records whose label is not a number (ASDiv has a few answers like "3:4" or names).
    """
    out: list[Example] = []
    clean = clean or []
    for rec in records:
        body = apply_cleaners(fill(question, rec, "question"), clean)
        raw_label = fill(label, rec, "label").strip()
        m: dict[str, Any] = {"source": _where(rec)}
        for k, tmpl in (meta or {}).items():
            m[k] = fill(tmpl, rec, f"meta.{k}")
        if rationale:
            text = apply_cleaners(fill(rationale, rec, "rationale"), rationale_clean or []).strip()
            if text:
                m["human_rationale"] = text
        if task.answer_type == "number":
            value = raw_label
            if label_regex:
                mm = re.search(label_regex, raw_label, re.DOTALL)
                value = mm.group(1) if mm else ""
            try:
                gold = canonical_number(value)
            except ValueError:
                if skip_unparseable_labels:
                    continue
                raise TaskDataError(f"{_where(rec)}: field 'label': {raw_label!r} is not a number") from None
            out.append(Example(id=_make_id(task, split, rec, id), task=task.name, category=task.category,
                               question=body, label=gold, answer_type="number", meta=m))
            continue
        if options:
            texts = [apply_cleaners(fill(t, rec, "option"), clean) for t in options]
            letters = task.letters_for(len(texts))
        else:
            letters, texts = task.option_letters, [task.verbalizers[x][0] for x in task.option_letters]
        gold = (label_map or {}).get(raw_label, raw_label if not label_map else None)
        if gold not in letters:
            raise TaskDataError(
                f"{_where(rec)}: field 'label': {raw_label!r} is not one of "
                f"{sorted(label_map) if label_map else letters}"
            )
        out.append(Example(id=_make_id(task, split, rec, id), task=task.name, category=task.category,
                           question=task.render_question(body, letters, texts), label=gold,
                           answer_type="choice", option_letters=letters, options=texts, meta=m))
    return out


def _choices_of(rec: Record) -> tuple[str, list[str], list[str]]:
    """(stem, labels, texts) from either ARC/CSQA original schema or the HF hub schema."""
    q = rec.get("question")
    if isinstance(q, dict):
        stem, choices = q.get("stem"), q.get("choices")
    else:
        stem, choices = q, rec.get("choices")
    if not isinstance(stem, str):
        raise TaskDataError(f"{_where(rec)}: field 'question': no question stem")
    if isinstance(choices, dict):
        labels, texts = list(choices.get("label", [])), list(choices.get("text", []))
    elif isinstance(choices, list):
        labels = [c.get("label") for c in choices]
        texts = [c.get("text") for c in choices]
    else:
        raise TaskDataError(f"{_where(rec)}: field 'choices': missing")
    if not texts or len(labels) != len(texts):
        raise TaskDataError(f"{_where(rec)}: field 'choices': labels and texts do not align")
    return stem, [str(x) for x in labels], [str(t) for t in texts]


@converter("mcqa")
def convert_mcqa(task: Task, records: list[Record], split: str, *, answer_field: str = "answerKey",
                 id: str | None = "{id}") -> list[Example]:
    """Multiple-choice QA (ARC, CommonsenseQA): options re-lettered A, B, C... by position
    (ARC sometimes labels them 1-4)."""
    out = []
    for rec in records:
        stem, labels, texts = _choices_of(rec)
        key = str(rec.get(answer_field, "")).strip()
        if key not in labels:
            raise TaskDataError(f"{_where(rec)}: field '{answer_field}': {key!r} is not one of {labels}")
        letters = task.letters_for(len(texts))
        gold = letters[labels.index(key)]
        out.append(Example(id=_make_id(task, split, rec, id), task=task.name, category=task.category,
                           question=task.render_question(stem.strip(), letters, texts), label=gold,
                           answer_type="choice", option_letters=letters, options=texts,
                           meta={"source": _where(rec)}))
    return out
