"""Each study stage kind's work, one module per kind (the stages themselves, as data: :mod:`raftlab.study.stages`).

``data``, ``rationales``, ``judge``, ``subset`` (a training-set size's examples), ``train``, ``evaluate`` (kind
``eval``), ``prompting`` (the untrained arms ① and ②), ``reference`` and ``mean_of_task`` (difficulty metrics),
``info_gain``, ``analysis``, ``report``; what they hand on is typed in :mod:`~raftlab.study.work.outputs`, what
several share is in :mod:`~raftlab.study.work.common`. Every stage's work is a function
``(config view, task view, dependencies' outputs..., folder) -> output`` (see
:class:`raftlab.study.stages.StudySteps`).
"""
