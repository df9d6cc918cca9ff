"""The label-only arms' token-probability confidence (study `eval.direct_prob`): scored beside the vote share,
read by the analysis, shown in the four-arm rows."""

from __future__ import annotations

import pytest

from raftlab import layout


@pytest.mark.slow
def test_label_only_arms_are_also_scored_by_token_probability(tmp_path):
    from raftlab.analysis import analyze_study, four_arm_rows
    from raftlab.study.config import load_config
    from raftlab.study.work.common import self_consistency, write_examples
    from raftlab.study.work.outputs import DataOutput
    from raftlab.tasks import get_task

    cfg = load_config("quick")
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"direct_prob": True, "k": 2})})
    task = get_task("synth_topic")
    write_examples(task.load("test", limit=6, seed=0), tmp_path / "test.jsonl")
    data_out = DataOutput("train.jsonl", "test.jsonl", folder=tmp_path)  # only the test file is read
    runs = tmp_path / "run" / layout.EVAL
    for arm, mode in (("ft", "direct"), ("raft", "cot")):
        metrics = self_consistency(cfg, "hf:tiny", task, data_out, mode, runs / arm / "synth_topic", 8)
        assert ("direct_prob" in metrics) == (mode == "direct")  # only the label-only arm is scored
    prob = runs / "ft" / "synth_topic" / layout.DIRECT_PROB
    assert (prob / "records.jsonl").is_file()
    result = analyze_study(tmp_path / "run", n_boot=50)
    row = result.task("synth_topic")
    assert set(row.token_prob) == {"ft"} and 0.0 <= row.token_prob["ft"]["ece"] <= 1.0
    table = four_arm_rows(result.tasks)[0]
    assert table["ece_③_prob"] == row.token_prob["ft"]["ece"] and "ece_④_prob" not in table
