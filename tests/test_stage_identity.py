"""Stage identity comes from what each stage reads: change any config field, and exactly the stages that read it
(recorded while a study runs, not listed by hand) get a new key."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from raftlab.study import StageRunner, StudyConfig, StudySteps, plan
from raftlab.study.inputs import (
    DECLARED, ConfigView, UndeclaredConfigRead, at_neutral_default, leaf_fields, read_path, stage_view,
)

#: A study in which every stage kind exists: four tasks (mean-of-task prompting), both prompts, token
#: probabilities, a reference model, information-gain curves, a named judge and a training-set size, all tiny.
EVERY_STAGE = {
    "name": "identity", "model": "tiny",
    "tasks": [{"name": t, "train_limit": 6, "test_limit": 2}
              for t in ("synth_topic", "synth_coinflip", "synth_arith", "synth_arith_easy")],
    "teacher": {"backend": "oracle"},
    "arms": ["ft", "raft"],
    "train": {"epochs": 1, "lora": False, "batch_size": 8, "max_length": 128, "learning_rate": 0.003},
    "eval": {"k": 2, "temperature": 0.8, "both_prompts": True, "direct_prob": True, "max_new_tokens": 24},
    "prompting": {"shots": 1},
    "mean_of_task": True,
    "reference": {"backend": "hf:tiny", "questions": 1, "k": 1, "max_new_tokens": 8},
    "info_gain_examples": 1, "info_gain_samples": 2, "info_gain_stride": 64,
    "judge": {"backend": "hf:tiny", "sample": 2, "max_new_tokens": 8},
    "train_sizes": [3],
    "executor": {"isolate": False},
}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyConfig, dict[str, set[str]]]:
    """Run the whole study in this process and record, per stage, the config fields its work read."""
    cfg = StudyConfig.model_validate(EVERY_STAGE)
    return cfg, _run_recording(cfg, tmp_path_factory.mktemp("identity"))


def _keyed(cfg: StudyConfig, reads: set[str]) -> set[str]:
    """The fields read that enter the stage's key: all but those at a neutral default (inputs.NEUTRAL_DEFAULTS)."""
    return {path for path in reads if not at_neutral_default(path, read_path(cfg, path))}


def _run_recording(cfg: StudyConfig, run_dir: Path) -> dict[str, set[str]]:
    stages = plan(cfg, StudySteps.real(), run_dir)
    runner = StageRunner(run_dir)
    outputs: dict[str, dict[str, Any]] = {}
    for st in stages:
        given = {d: {**outputs[d], "_stage_dir": str(runner.stage_dir(d))} for d in st.deps}
        outputs[st.name] = runner.run(st.name, st.inputs, lambda d, s=st, g=given: s.work(g, d), st.deps,
                                      key=st.key)
    return {st.name: set(st.view.reads) for st in stages}


@pytest.fixture(scope="module")
def recorded_other_branches(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyConfig, dict[str, set[str]]]:
    """The other side of every conditional declaration: a real teacher (an OpenAI-style server on loopback, also
    the judge), a prompting backend of its own, the scored information gain."""
    from raftlab.tasks import get_task
    from tests.test_teacher_soak import FakeTeacher

    examples = get_task("synth_arith").load("train", limit=6, seed=0)
    teacher = FakeTeacher({e.question: e.label for e in examples}, faults=False)
    teacher.start()
    try:
        cfg = StudyConfig.model_validate({
            **{k: v for k, v in EVERY_STAGE.items() if k not in ("mean_of_task", "reference")},
            "tasks": [{"name": "synth_arith", "train_limit": 6, "test_limit": 2}],
            "teacher": {"backend": teacher.spec, "max_retries": 4, "backend_options": {"timeout": 30}},
            "prompting": {"backend": "hf:tiny", "shots": 1, "backend_options": {"batch_size": 4}},
            "info_gain_method": "scored", "judge": {"sample": 2}})  # the teacher judges
        return cfg, _run_recording(cfg, tmp_path_factory.mktemp("identity-other"))
    finally:
        teacher.stop()


@pytest.mark.slow
def test_the_other_branches_declare_exactly_what_they_read(recorded_other_branches) -> None:
    cfg, reads = recorded_other_branches
    assert "teacher.backend_options" in reads["rationales/synth_arith"]
    assert "prompting.backend_options" in reads["eval/icl_label/synth_arith"]
    assert {"teacher.backend", "teacher.backend_options"} <= reads["judge/synth_arith"]
    for st in plan(cfg, StudySteps.real(), Path("unused")):
        assert _keyed(cfg, reads[st.name]) == set(st.inputs), st.name


@pytest.mark.slow
def test_every_stage_kind_ran(recorded) -> None:
    cfg, reads = recorded
    kinds = {s.kind for s in plan(cfg, StudySteps.real(), Path("unused"))}
    assert kinds == set(DECLARED)


@pytest.mark.slow
def test_each_stage_declares_exactly_what_it_reads(recorded) -> None:
    """Declared but never read would rerun a stage for nothing; read but not declared cannot happen (the view
    refuses it, see the next test)."""
    cfg, reads = recorded
    for st in plan(cfg, StudySteps.real(), Path("unused")):
        assert _keyed(cfg, reads[st.name]) == set(st.inputs), st.name


def test_a_stage_cannot_read_an_undeclared_field() -> None:
    cfg = StudyConfig.model_validate(EVERY_STAGE)
    view, task = stage_view(cfg, "data", "data/synth_topic", cfg.tasks[0])
    assert task.train_limit == 6 and view.seed == 0
    with pytest.raises(UndeclaredConfigRead, match="field .eval."):
        _ = view.eval.k
    with pytest.raises(UndeclaredConfigRead, match="teacher"):
        view.teacher.model_dump()
    with pytest.raises(AttributeError):
        view.seed = 3
    assert view.reads == {"tasks.synth_topic.train_limit", "seed"}


def test_a_view_travels_to_a_worker_process() -> None:
    import pickle

    cfg = StudyConfig.model_validate(EVERY_STAGE)
    view, _ = stage_view(cfg, "eval", "eval/ft/synth_topic", cfg.tasks[0])
    copy = pickle.loads(pickle.dumps(view))
    assert isinstance(copy, ConfigView) and copy.eval.k == 2
    with pytest.raises(UndeclaredConfigRead):
        _ = copy.teacher


# ----------------------------------------------------------------------------- every leaf field, changed


def _annotation(cfg: StudyConfig, path: str) -> Any:
    """The type annotation of the field at ``path``."""
    model: Any = cfg
    parts = path.split(".")
    i = 0
    while True:
        if parts[i] == "tasks" and isinstance(model, StudyConfig):
            model, i = model.tasks[0], i + 2
            continue
        info = type(model).model_fields[parts[i]]
        if i == len(parts) - 1:
            return info.annotation
        model, i = getattr(model, parts[i]), i + 1


def _candidates(value: Any, annotation: Any) -> list[Any]:
    """Other values to try for a field (the first that validates is used)."""
    if isinstance(value, list):
        return [[*value, "blank"], [*value, 1], value[:-1]]
    args = typing.get_args(annotation)
    literals = [a for a in args if not isinstance(a, type)] if typing.get_origin(annotation) is typing.Literal else []
    for arg in args:  # Optional[Literal[...]]
        if typing.get_origin(arg) is typing.Literal:
            literals += list(typing.get_args(arg))
    if literals:
        return [v for v in literals if v != value]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1]
    if isinstance(value, float):
        return [value / 2, value + 0.5]
    if isinstance(value, str):
        return ["hf:tiny", "vllm", "tiny-llama", value + "x"]
    if isinstance(value, dict):
        return [{**value, "changed": 1}]
    if value is None:
        return [1, 0.5, "hf:tiny", "cpu", "accelerate launch", "packaged", [0], {"backend": "hf:tiny"},
                {"synth_topic": 1}]
    raise AssertionError(f"no candidate values for {value!r}")


def _with(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    parts = path.split(".")
    if parts[0] == "tasks":
        next(t for t in data["tasks"] if t["name"] == parts[1])[parts[2]] = value
        return data
    node = data
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    return data


def _changed(cfg: StudyConfig, path: str) -> StudyConfig:
    value = leaf_fields(cfg)[path]
    for candidate in _candidates(value, _annotation(cfg, path)):
        data = _with(cfg.model_dump(mode="json"), path, candidate)
        try:
            new = StudyConfig.model_validate(data)
        except ValidationError:
            continue
        if leaf_fields(new).get(path) != value:
            return new
    raise AssertionError(f"found no valid other value for config field {path} (extend _candidates)")


def _downstream(stages: list[Any], changed: set[str]) -> set[str]:
    out = set(changed)
    for st in stages:  # plan order: dependencies come first
        if any(d in out for d in st.deps):
            out.add(st.name)
    return out


@pytest.mark.slow
def test_changing_any_field_reruns_exactly_the_stages_that_read_it(recorded) -> None:
    cfg, reads = recorded
    before = {s.name: s for s in plan(cfg, StudySteps.real(), Path("unused"))}
    leaves = leaf_fields(cfg)
    assert len(leaves) > 60  # every field of every section, tasks by name
    checked = 0
    for path in leaves:
        if path.endswith(".name") and path.startswith("tasks."):
            continue  # renaming a task renames its stages (no stage keeps its name to compare)
        new_cfg = _changed(cfg, path)
        after = {s.name: s for s in plan(new_cfg, StudySteps.real(), Path("unused"))}
        common = [n for n in before if n in after]
        own = {n for n in common if before[n].inputs != after[n].inputs}
        readers = {n for n in common if path in reads[n]}
        assert own == readers, f"{path}: slice changed for {sorted(own ^ readers)}"
        rekeyed = {n for n in common if before[n].key != after[n].key}
        rewired = {n for n in common if before[n].deps != after[n].deps}  # e.g. a new arm feeds info_gain
        assert rekeyed == _downstream(list(after.values()), readers | rewired) & set(common), path
        checked += 1
    assert checked > 50


def test_a_new_field_needs_a_value_here() -> None:
    """Every leaf of the config has a changed value the test above can use (a new field with an unusual type
    must extend ``_candidates``, not be skipped silently)."""
    cfg = StudyConfig.model_validate(EVERY_STAGE)
    for path in leaf_fields(cfg):
        if not (path.startswith("tasks.") and path.endswith(".name")):
            assert isinstance(_changed(cfg, path), BaseModel)


def test_a_field_at_its_neutral_default_keeps_earlier_keys() -> None:
    """Fields added later (teacher.kept_target, teacher.traversals, a task's role, train.lora_dropout) leave every
    key as it was at
    their default, and change the keys of exactly the stages that read them otherwise."""
    cfg = StudyConfig.model_validate(EVERY_STAGE)
    base = {st.name: st.key for st in plan(cfg, StudySteps.real(), Path("unused"))}
    data = cfg.model_dump(mode="json")
    data["teacher"].update(kept_target=None, traversals=1)
    assert {st.name: st.key for st in plan(StudyConfig.model_validate(data), StudySteps.real(), Path("u"))} == base
    data["teacher"]["traversals"] = 2
    data["tasks"][0]["role"] = "validation"
    changed = {st.name for st in plan(StudyConfig.model_validate(data), StudySteps.real(), Path("u"))
               if st.key != base[st.name]}
    assert "rationales/synth_topic" in changed and "analysis" in changed and "data/synth_topic" not in changed
    stages = plan(cfg, StudySteps.real(), Path("u"))
    assert all("train.lora_dropout" not in st.inputs for st in stages)  # at the rate used before it existed
    assert any("train.lora" in st.inputs for st in stages)  # (the train stages' slices are what is looked at)
    data = cfg.model_dump(mode="json")
    data["train"]["lora_dropout"] = 0.1
    changed = {st.name for st in plan(StudyConfig.model_validate(data), StudySteps.real(), Path("u"))
               if st.key != base[st.name]}
    assert changed and {name.split("/")[0] for name in changed} <= {"train", "eval", "info_gain", "sizes", "analysis",
                                                                    "report"}, changed
    assert any(name.startswith("train") for name in changed) and "data/synth_topic" not in changed
