"""``make_objective``: the one place a procedure name becomes a training objective (``objective.Objective``)."""
from . import PROCEDURES
from .kd import KnowledgeDistillation
from .objective import CrossEntropyObjective
from .rd import ResidualDistillation


def make_objective(procedure, student, teacher=None, *, kd_alpha=0.9, kd_temperature=4.0, injection_points=None,
                   fd_lambda=0.001, rd_variant="paper", eta_min=0.5, eta_epochs=60):
    """The objective of ``procedure`` training ``student`` (for ``teacher``/``plain``: the network itself),
    distilling from ``teacher`` (kd, fd, rd). fd is RD's feature distillation without mixed paths. Raises
    ValueError for settings that do not fit the networks (stage widths, injection points)."""
    if procedure not in PROCEDURES:
        raise ValueError(f"unknown procedure '{procedure}'; choose one of {', '.join(PROCEDURES)}")
    if procedure in ("teacher", "plain"):
        return CrossEntropyObjective(student)
    if teacher is None:
        raise ValueError(f"procedure {procedure} needs a teacher")
    if procedure == "kd":
        return KnowledgeDistillation(student, teacher, kd_alpha, kd_temperature)
    return ResidualDistillation(student, teacher, () if procedure == "fd" else injection_points, fd_lambda,
                                rd_variant, eta_min=eta_min, eta_epochs=eta_epochs)
