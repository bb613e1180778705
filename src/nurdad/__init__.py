"""nurdad: robust, fast anomaly detection for collider jets with Nuisance-Randomized Distillation.

Pipeline (one subpackage/module per stage, imports flow one way):
simulation -> images -> data -> models/nurd (train) -> detectors -> metrics/evaluate -> report/export,
with `nurdad.cli` a thin layer on top.
"""

__version__ = "0.1.0"
