"""Hinton knowledge distillation (the KD baseline): the student matches the frozen teacher's softened logits."""
from mindspore import nn, ops

from ..precision import to_loss_dtype
from .objective import Objective, freeze


class KnowledgeDistillation(Objective):
    """Hinton KD: (1 - alpha) * CE(student) + alpha * T^2 * KL(teacher_T || student_T)."""
    term_names = ("ce", "kd")

    def __init__(self, student, teacher, alpha=0.9, temperature=4.0):
        super().__init__()
        self.student = student
        self.teacher = freeze(teacher)
        self.alpha, self.temperature = alpha, temperature
        self.ce = nn.CrossEntropyLoss()

    @property
    def deployable(self):
        return self.student

    def construct(self, images, labels):
        logits, teacher_logits = to_loss_dtype(self.student(images), ops.stop_gradient(self.teacher(images)))
        t = self.temperature
        log_p_student = ops.log_softmax(logits / t, 1)
        log_p_teacher = ops.log_softmax(teacher_logits / t, 1)
        kd = (ops.exp(log_p_teacher) * (log_p_teacher - log_p_student)).sum() / logits.shape[0] * (t * t)
        ce = self.ce(logits, labels)
        return (1.0 - self.alpha) * ce + self.alpha * kd, logits, (ce, kd)
