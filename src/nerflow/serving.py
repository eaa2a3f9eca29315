"""Where versions registered before task types existed find their model class: their pyfunc was pickled as
`nerflow.serving.NerModel`, so that name must keep resolving (tests/unit/test_task_seam.py loads such a pickle).
The serving code itself is the task's: nerflow.ner.serving, nerflow.textcat.serving. This alias is the one shared
module allowed to name a task module.
"""
from nerflow.ner.serving import ARTIFACT, SIGNATURE, NerModel  # noqa: F401 - the old import path
