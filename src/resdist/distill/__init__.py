"""Training objectives: what a procedure optimises, given the student and (for kd, fd, rd) a frozen teacher.

- ``objective``: the protocol every objective follows, plain cross-entropy training, and freezing a teacher.
- ``kd``: Hinton knowledge distillation.
- ``feature``: feature distillation's parts (Heo et al.'s margin and partial L2, the connector).
- ``rd``: the joint RD step (the paper's method; read it top to bottom).
- ``builder``: ``make_objective(procedure, student, teacher, ...)``, the one place a procedure becomes an objective.

Importing this package does not import MindSpore (the option table reads ``PROCEDURES``)."""
PROCEDURES = ("teacher", "plain", "kd", "fd", "rd")
WITH_TEACHER = ("kd", "fd", "rd")  # the procedures that distil from a frozen teacher
