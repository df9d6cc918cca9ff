"""``raftlab study``: the whole FT-vs-RAFT measurement from one YAML config, cached and resumable per stage."""

from raftlab.study.cache import StageChangedError, StageFailed, StageRunner
from raftlab.study.config import BUILTIN, ConfigError, StudyConfig, load_config
from raftlab.study.run import StudyResult, plan_study, run_study
from raftlab.study.stages import Stage, StudySteps, plan

__all__ = ["BUILTIN", "ConfigError", "StageChangedError", "StageFailed", "StageRunner", "StudyConfig", "StudyResult",
           "Stage", "StudySteps", "load_config", "plan", "plan_study", "run_study"]
