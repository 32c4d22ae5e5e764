"""Joint Residual Distillation (Li et al., NeurIPS 2020): the training objective, top to bottom.

A frozen residual teacher and a trainable plain student sit in one Cell. For each batch:

1. The student runs once, keeping the outputs f_1..f_{S-1} of its stages, its pre-ReLU final feature, and
   its logits z_S.
2. Each f_k (k in the injection points, by default 1..S-1) runs through the *teacher's* stages k+1..S,
   pooling and classifier: mixed-path logits z_k. The teacher's weights get no gradient, but the loss on z_k
   flows back through the teacher's shortcuts into student stages 1..k -- the shortcuts help train the
   student without being part of it.
3. Loss = CE(z_S) + eta * sum_k CE(z_k) + lambda * D, with D the margin-based feature distillation between
   the student's final feature (through a 1x1 conv + BN connector) and the teacher's.

``variant`` reproduces the authors' released code instead of the paper:
  "ta"    mixed paths are computed and logged but left out of the loss: CE + lambda * D.
  "joint" 1/4 * [eta * sum_k CE(z_k) + CE(z_S)] + 1/4 * lambda * [eta * sum_k D_k + D], D_k comparing the
          mixed path's final pre-ReLU feature, through a connector of its own (1x1 conv + BN, as in their
          code; trained, saved for --resume, never deployed), with the teacher's own. Here the teacher stays
          frozen; their code also trained it from scratch alongside.
With no injection points and lambda > 0 this is feature distillation alone (the ``fd`` baseline).
Only the student is deployed.
"""
import math

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from ..precision import to_loss_dtype
from .feature import Connector, margin_tensor, partial_l2
from .objective import Objective, freeze

VARIANTS = ("paper", "ta", "joint")


def eta_at(epoch, eta_min=0.5, eta_epochs=60):
    """Weight of the mixed-path losses at ``epoch`` (from 0): cosine from 1 to eta_min over eta_epochs."""
    if epoch >= eta_epochs:
        return float(eta_min)
    return eta_min + (1.0 - eta_min) * (1.0 + math.cos(math.pi * epoch / eta_epochs)) / 2.0


class ResidualDistillation(Objective):
    term_names = ("ce", "mixed_ce", "fd")

    def __init__(self, student, teacher, injection_points=None, fd_lambda=0.001, variant="paper", eta_min=0.5,
                 eta_epochs=60):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown RD variant '{variant}'; choose one of {', '.join(VARIANTS)}")
        if list(student.stage_channels) != list(teacher.stage_channels):
            raise ValueError(f"student and teacher stages differ in width ({student.stage_channels} vs "
                             f"{teacher.stage_channels}): a student stage output cannot enter the teacher")
        stages = student.num_stages
        points = tuple(range(1, stages)) if injection_points is None else tuple(sorted(set(injection_points)))
        if any(not 1 <= k < stages for k in points):
            raise ValueError(f"injection points {list(points)} must lie in 1..{stages - 1} "
                             f"(after a stage of the student, not the last)")
        self.student = student
        self.teacher = freeze(teacher)
        self.injection_points = points
        self.variant = variant
        self.fd_lambda = float(fd_lambda)
        self.use_fd = self.fd_lambda > 0
        self.connector = Connector(student.num_features, teacher.num_features) if self.use_fd else None
        joint_fd = variant == "joint" and self.use_fd
        self.path_connectors = nn.CellList([Connector(teacher.num_features, teacher.num_features)
                                            for _ in points]) if joint_fd else None
        self.margin = margin_tensor(teacher)
        self.eta = Parameter(Tensor(1.0, ms.float32), name="eta", requires_grad=False)  # set every epoch
        self.eta_min, self.eta_epochs = eta_min, eta_epochs
        self.ce = nn.CrossEntropyLoss()
        self.relu = nn.ReLU()
        self.zero = Tensor(0.0, ms.float32)

    @property
    def deployable(self):
        return self.student

    def extra_state(self):
        """Trained parameters besides the student's (saved for --resume, never deployed)."""
        state = dict(self.connector.parameters_and_names("connector")) if self.use_fd else {}
        if self.path_connectors is not None:
            state.update(self.path_connectors.parameters_and_names("path_connectors"))
        return state

    def start_epoch(self, epoch):
        """The mixed-path weight eta for ``epoch`` (from 0): cosine from 1 to eta_min over eta_epochs. FD alone
        (no injection points) has no mixed paths, hence no eta."""
        if not self.injection_points:
            return {}
        eta = eta_at(epoch, self.eta_min, self.eta_epochs)
        self.set_eta(eta)
        return {"eta": eta}

    def set_eta(self, value):
        # in place: a compiled step keeps the Parameter's storage, so set_data (a new tensor) would go unseen
        # and the graph would train on with the eta it was compiled with
        ops.assign(self.eta, Tensor(value, ms.float32))

    def teacher_logits(self, teacher_preact):
        """The teacher's final ReLU, pooling and classifier on a pre-ReLU feature of its last stage."""
        return self.teacher.forward_head(self.relu(teacher_preact))

    def construct(self, images, labels):
        # 1. the student, once
        stage_outputs, student_preact = self.student.stage_outputs_and_preact(images)
        logits = to_loss_dtype(self.student.forward_head(self.relu(student_preact)))
        ce = self.ce(logits, labels)

        # the teacher's own final feature, only if feature distillation needs it
        teacher_preact = self.zero
        if self.use_fd:
            _, teacher_preact = self.teacher.stage_outputs_and_preact(images)
            teacher_preact = ops.stop_gradient(teacher_preact)

        # 2. mixed paths: student stages 1..k, then teacher stages k+1..S
        mixed_ce, mixed_fd = self.zero, self.zero
        for i, k in enumerate(self.injection_points):
            mixed_preact = self.teacher.preact_from_stage(stage_outputs[k - 1], k)
            mixed_ce = mixed_ce + self.ce(to_loss_dtype(self.teacher_logits(mixed_preact)), labels)
            if self.path_connectors is not None:
                mixed_fd = mixed_fd + partial_l2(self.path_connectors[i](mixed_preact), teacher_preact, self.margin)

        # 3. feature distillation on the student's final feature
        fd = self.zero
        if self.use_fd:
            fd = partial_l2(self.connector(student_preact), teacher_preact, self.margin)

        if self.variant == "ta":
            loss = ce + self.fd_lambda * fd
            mixed_ce = ops.stop_gradient(mixed_ce)
        elif self.variant == "joint":
            loss = 0.25 * (self.eta * mixed_ce + ce) + 0.25 * self.fd_lambda * (self.eta * mixed_fd + fd)
        else:
            loss = ce + self.eta * mixed_ce + self.fd_lambda * fd
        return loss, logits, (ce, mixed_ce, fd)
