"""The training loop: data, network, objective, optimizer, logging, validation and checkpoints.

``run_job(cfg)`` runs one training job described by a Config (see ``resdist.config``) and returns its
per-epoch metrics: ``setup_run`` builds everything, ``train`` runs the epochs. The objective (what loss is
optimised) comes from ``build_objective``; the loop is the same for every procedure. The run folder (naming,
locking, what a resume may change) is ``train.run_folder``'s.
"""
import json
import logging
import os
import time
from dataclasses import dataclass

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from .. import checkpoint as ckpt_io
from .. import runtime
from ..build import build_dataset, build_network, identity
from ..config import options_for
from ..data import check_dataset, checked, epoch_iterator, epoch_seed
from ..distill import WITH_TEACHER
from ..distill.builder import make_objective
from ..errors import ConfigError, TrainingError
from ..evaluate import evaluate
from ..fsutil import write_json, write_text
from ..models import is_model, list_models, model_info, plain_twin, qat, teacher_of
from ..models.dirac import apply_dirac, deployable_params, dirac_record, is_dirac_state
from ..precision import apply_precision
from .finetune import backbone_parameters, freeze_stages, load_pretrained
from .optim import create_optimizer, lr_per_step
from .run_folder import check_resume_config, choose_output_dir, open_run_folder, recorded_config

logger = logging.getLogger("resdist")


def teacher_arch(cfg):
    """The teacher network: ``teacher_arch``, or (auto) the one the registry names for the student."""
    if cfg.teacher_arch != "auto":
        return cfg.teacher_arch
    teacher = teacher_of(cfg.arch)
    if teacher is None:
        raise ConfigError(f"arch={cfg.arch} has no registered teacher (it is residual itself); pass --teacher_arch")
    return teacher


def check_procedure(cfg):
    if cfg.procedure in WITH_TEACHER:
        return
    residual, twin = model_info(cfg.arch).residual, plain_twin(cfg.arch)
    if cfg.procedure == "teacher" and not residual:
        raise ConfigError(f"procedure=teacher trains a residual network, but arch={cfg.arch} is plain; "
                          f"use procedure=plain" + (f", or arch={twin}" if twin else ""))
    if cfg.procedure == "plain" and residual:
        raise ConfigError(f"procedure=plain trains a plain network, but arch={cfg.arch} has shortcuts; "
                          f"use procedure=teacher" + (f", or arch={twin}" if twin else ""))


def check_applicable(cfg):
    """Keys that only mean something beside another: set without it they would be silently ignored."""
    if cfg.new_classifier and not cfg.pretrained_ckpt:
        raise ConfigError("new_classifier=true starts a pretrained network's classifier afresh, but no "
                          "pretrained_ckpt is given (a new network's classifier is new anyway); pass "
                          "--pretrained_ckpt PATH, or leave out new_classifier")
    if cfg.qat:
        check_qat(cfg)
    default = next(o.default for o in options_for("train") if o.name == "crop_scale_min")
    if cfg.crop_scale_min != default and cfg.dataset != "imagefolder":
        raise ConfigError(f"crop_scale_min={cfg.crop_scale_min:g} shapes image folders' random-resized crop; "
                          f"dataset={cfg.dataset} trains with its own crop and would ignore it; leave it out")


QAT_PROCEDURES = ("plain", "kd")  # objectives on the logits alone: RD and FD read BatchNorm, which QAT folds away


def check_qat(cfg):
    """What quantization-aware fine-tuning (``models.qat``) takes: a trained, fully plain network and an
    objective on its logits."""
    if not cfg.pretrained_ckpt:
        raise ConfigError("qat=true fine-tunes a trained network for INT8 (BatchNorm folded, as deployed): pass "
                          "--pretrained_ckpt PATH, e.g. a run's final.ckpt")
    if cfg.dirac:
        raise ConfigError("qat=true fine-tunes the deployed form of the network, where Dirac convolutions are "
                          "already ordinary ones: leave out --dirac and pass the Dirac run's final.ckpt as "
                          "--pretrained_ckpt")
    if cfg.procedure not in QAT_PROCEDURES:
        raise ConfigError(f"qat=true trains with procedure plain (cross-entropy) or kd (from --teacher_ckpt), not "
                          f"{cfg.procedure}: feature and residual distillation read BatchNorm, which QAT folds")
    if model_info(cfg.arch).residual or cfg.plain_variant != "full":
        raise ConfigError(f"qat=true simulates a plain network's INT8 graph; arch={cfg.arch} plain_variant="
                          f"{cfg.plain_variant} has shortcut additions: use a plainN with plain_variant full")
    if cfg.freeze_stages:
        raise ConfigError("qat=true fine-tunes the whole network; leave out --freeze_stages")


def check_inputs(cfg):
    """What can be checked before anything is built: the procedure, the data set's files, the run folder's name
    and, for a resume, that the recipe is the one the run recorded. Creates nothing. The one place ``cfg`` is
    completed (run folder named, resume path resolved, precision forced to O0 on CPU), so that config.yaml
    records what ran. Returns notes for the log."""
    check_procedure(cfg)
    check_applicable(cfg)
    dataset_sink_mode(cfg)
    check_dataset(cfg.dataset, cfg.data_path, cfg.val_split)
    choose_output_dir(cfg)
    notes = [check_resume_config(cfg)] if cfg.resume else []
    if cfg.amp_level != "O0" and cfg.device_target == "CPU":
        notes.append(f"amp_level={cfg.amp_level} is for Ascend/GPU; using O0 on CPU")
        cfg.amp_level = "O0"
    return [n for n in notes if n]


def read_resume_checkpoint(cfg):
    """The training state ``--resume`` names, checked against the network being trained."""
    state = ckpt_io.read(cfg.resume, "resume checkpoint")
    ckpt_io.check_identity(state, "resume checkpoint", cfg.resume, {**identity(cfg, cfg.arch),
                                                                    "procedure": cfg.procedure})
    if not any(name.startswith(ckpt_io.OPTIMIZER_PREFIXES) for name in state):
        raise ckpt_io.CheckpointError(f"resume checkpoint {cfg.resume} has no optimizer state: it is a network "
                                      f"alone (as best.ckpt is), not a training checkpoint; resume from the "
                                      f"run's last.ckpt (--resume auto) or an epoch_NNNN.ckpt")
    # a moved checkpoint has no config.yaml to compare --dirac with, and a Dirac state loads into an ordinary
    # network (folded, as for evaluation), which would train on as another experiment: check the state itself
    trained_dirac = is_dirac_state(state)
    if trained_dirac != bool(cfg.dirac):
        trained = str(trained_dirac).lower()
        raise ConfigError(f"resume: {cfg.resume} is the training state of a run with dirac={trained}, this run "
                          f"has dirac={str(bool(cfg.dirac)).lower()}; pass --dirac {trained} to continue it")
    done = int(ckpt_io.meta_value(state, "epoch", 0))
    if cfg.epochs < done:
        raise ConfigError(f"resume: {cfg.resume} has {done} epochs done, more than epochs={cfg.epochs}; pass "
                          f"--epochs {done + 1} or more to continue the run")
    return state


def check_resumed_schedule(cfg, state, steps_per_epoch):
    """A resume continues the run's learning-rate schedule at its optimizer step, so the steps of an epoch must be
    the run's (batch size, data, max_steps_per_epoch: a checkpoint moved out of its run folder has no config.yaml
    to compare them with) and a cosine schedule keeps its length: it is built for ``epochs``, so another value
    would move every later step's learning rate (a 60-epoch run resumed at 30 as a 100-epoch one jumps from 0.050
    to 0.079). A step schedule's milestones are epochs, so ``--epochs`` may extend it: the epochs added run at
    the last milestone's rate. Older checkpoints record neither number: the steps come from their optimizer's
    step counter, the schedule's length from config.yaml (check_resume_config)."""
    done = int(ckpt_io.meta_value(state, "epoch", 0))
    recorded = ckpt_io.meta_value(state, "steps_per_epoch")
    if recorded is None and done and "global_step" in state:
        step = int(np.asarray(state["global_step"].asnumpy()).reshape(-1)[0])
        recorded = step // done if step % done == 0 else None
    if recorded is not None and int(recorded) != steps_per_epoch:
        raise ConfigError(f"resume: {cfg.resume} was trained with {int(recorded)} steps an epoch, this run would "
                          f"take {steps_per_epoch} (batch_size {cfg.batch_size}, max_steps_per_epoch "
                          f"{cfg.max_steps_per_epoch}, the data); pass the run's own settings, or start a new run "
                          f"from its weights with --pretrained_ckpt")
    length = ckpt_io.meta_value(state, "schedule_epochs") or (recorded_config(cfg.resume) or {}).get("epochs")
    if cfg.lr_schedule == "cosine" and length is not None and int(length) != cfg.epochs:
        raise ConfigError(f"resume: {cfg.resume} follows a cosine learning-rate schedule over {int(length)} epochs; "
                          f"epochs={cfg.epochs} would change the learning rate of every step still to come. Pass "
                          f"--epochs {int(length)}, or train on from its final.ckpt with --pretrained_ckpt and a "
                          f"schedule of its own")


def load_teacher(cfg, num_classes):
    """The teacher network with ``teacher_ckpt`` loaded; clear errors if missing, unreadable or mismatched."""
    arch = teacher_arch(cfg)
    if not is_model(arch):
        raise ConfigError(f"unknown teacher_arch '{arch}'; known: {', '.join(list_models())}")
    if not cfg.teacher_ckpt:
        raise ConfigError(f"procedure={cfg.procedure} needs a trained teacher: pass --teacher_ckpt PATH "
                          f"(train one with --procedure teacher --arch {arch})")
    teacher = build_network(cfg, arch, num_classes)
    state = ckpt_io.read(cfg.teacher_ckpt, "teacher checkpoint")
    ckpt_io.load_network(teacher, state, "teacher checkpoint", cfg.teacher_ckpt, arch, identity(cfg, arch))
    return teacher


def build_objective(cfg, net, num_classes):
    """The loss Cell for ``cfg.procedure``; ``net`` is the network being trained (the student)."""
    teacher = load_teacher(cfg, num_classes) if cfg.procedure in WITH_TEACHER else None
    try:  # RD settings that do not fit the networks (stage widths, injection points)
        return make_objective(cfg.procedure, net, teacher, kd_alpha=cfg.kd_alpha, kd_temperature=cfg.kd_temperature,
                              injection_points=cfg.injection_points or None, fd_lambda=cfg.fd_lambda,
                              rd_variant=cfg.rd_variant, eta_min=cfg.eta_min, eta_epochs=cfg.eta_epochs)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


class WindowSums(nn.Cell):
    """Sums of a step's loss, correct count and loss terms, kept on the device across the steps of a logging
    window: the training step adds to them, the host reads them (``read_back``) once a window and clears them.
    They live in a Parameter, so a data-sink call running many steps on the device accumulates them as well."""

    def __init__(self, num_terms):
        super().__init__()
        self.sums = ms.Parameter(ms.Tensor(np.zeros(2 + num_terms, np.float32)), name="window_sums",
                                 requires_grad=False)

    def construct(self, loss, correct, terms):
        stats = ops.stack([loss.astype(ms.float32), correct.astype(ms.float32)]
                          + [t.astype(ms.float32) for t in terms])
        return ops.assign_add(self.sums, stats)

    def take(self):
        """(loss sum, correct sum, [term sums]) on the host, and the sums cleared: one device read-back."""
        values = read_back(self.sums).astype(np.float64)
        ops.assign(self.sums, ops.zeros_like(self.sums))
        return values[0], values[1], values[2:]


def read_back(tensor):
    """The one place the training loop copies a device tensor to the host (which waits for the device)."""
    return tensor.asnumpy()


def make_train_step(objective, optimizer, loss_scale=1.0, distributed=False, compile_step=True, jit_level=None,
                    loss_scale_type="static", window=None):
    """One optimisation step ``(images, labels) -> (loss, correct, terms)``: forward, backward through the
    objective, (all-reduce), SGD update. Gradients are taken w.r.t. the optimizer's parameters only, so
    anything else in the objective (e.g. a frozen teacher) gets no weight gradients. With ``window`` (a
    WindowSums) the step also adds its loss, correct count and terms to the window's device-side sums.

    Loss scaling (for float16, see ``precision``): ``static`` multiplies the loss by ``loss_scale`` and divides
    the gradients back; ``dynamic`` starts at ``loss_scale``, skips the update of a step whose gradients
    overflow and halves the scale, and doubles it after 1000 finite steps (MindSpore's DynamicLossScaler, as the
    model zoo uses it). The dynamic scale restarts from ``loss_scale`` on --resume."""
    weights = optimizer.parameters
    dynamic = loss_scale_type == "dynamic"
    scaler = ms.amp.DynamicLossScaler(loss_scale, 2, 1000) if dynamic else ms.amp.StaticLossScaler(loss_scale)

    def forward(images, labels):
        loss, logits, terms = objective(images, labels)
        return scaler.scale(loss), logits, terms

    grad_fn = ms.value_and_grad(forward, None, weights, has_aux=True)
    reducer = nn.DistributedGradReducer(weights) if distributed else None

    def step(images, labels):
        (loss, logits, terms), grads = grad_fn(images, labels)
        if reducer is not None:
            grads = reducer(grads)
        grads, loss = scaler.unscale(grads), scaler.unscale(loss)  # before adjust() changes the scale
        if dynamic:
            finite = ms.amp.all_finite(grads)
            if finite:
                loss = ops.depend(loss, optimizer(grads))
            scaler.adjust(finite)
        else:
            loss = ops.depend(loss, optimizer(grads))
        correct = (ops.argmax(logits, 1) == labels).astype(ms.int32).sum()
        if window is not None:
            loss = ops.depend(loss, window(loss, correct, terms))
        return loss, correct, terms

    if not compile_step:
        return step
    return ms.jit(step, jit_level=jit_level) if jit_level else ms.jit(step)


def dataset_sink_mode(cfg):
    """Whether steps run in data-sink mode: ``auto`` is on wherever the target is not the CPU (as the model zoo
    and mindcv train on Ascend); MindSpore refuses data sinking on CPU, so ``true`` there is an error."""
    if cfg.dataset_sink_mode == "auto":
        return cfg.device_target != "CPU"
    if cfg.dataset_sink_mode == "true" and cfg.device_target == "CPU":
        raise ConfigError("dataset_sink_mode=true needs device_target Ascend or GPU (MindSpore: \"Data sinking "
                          "supports ascend or gpu device target\"); on CPU use dataset_sink_mode auto or false")
    return cfg.dataset_sink_mode == "true"


def sink_size(steps_per_epoch, log_interval):
    """Steps per data-sink call: the largest divisor of the epoch's steps not above ``log_interval``, so that the
    calls cover the epoch exactly (no remainder; an epoch of a prime number of steps above log_interval sinks one
    step per call: pick another log_interval or max_steps_per_epoch then)."""
    return max(d for d in range(1, min(log_interval, steps_per_epoch) + 1) if steps_per_epoch % d == 0)


@dataclass
class Run:
    """What one training run is made of, set up once by ``setup_run``; every epoch reads it."""
    cfg: object
    rank: int
    group_size: int
    train_ds: object
    val_ds: object              # None where this rank does not validate
    val_info: dict
    objective: object
    optimizer: object
    lrs: object                 # learning rate of every step
    steps_per_epoch: int
    sink: bool                  # steps run in data-sink calls on the device
    chunk: int                  # steps between two read-backs: log_interval, or the sink size
    window: WindowSums
    train_step: object
    sink_call: object           # data sink only: runs ``chunk`` steps on the device (make_sink_call)
    manager: object
    meta: dict                  # what every checkpoint of the run records
    start_epoch: int
    best_acc: float
    deploy_params: object       # () -> {name: Tensor}: the network as best.ckpt / final.ckpt store it
    calibrate: object           # qat: () -> None, re-measures the activation ranges; else None

    @property
    def deployable(self):
        return self.objective.deployable


def setup_run(cfg, rank, group_size):
    """Data, networks, objective, optimizer, compiled step and resume state of a run (logged as they are built):
    everything a bad input can fail on, built once, before the run folder is touched."""
    resume_state = read_resume_checkpoint(cfg) if cfg.resume else None
    sink = dataset_sink_mode(cfg)

    train_ds, train_info = build_dataset(cfg, "train", rank, group_size)
    val_ds = val_info = None
    if str(cfg.val_split) != "none" and rank == 0:  # validated once, by rank 0 (the weights are the same on all)
        val_ds, val_info = build_dataset(cfg, "val")
    num_classes = train_info["num_classes"]
    if cfg.num_classes and cfg.num_classes != num_classes:
        raise ConfigError(f"num_classes={cfg.num_classes} but {cfg.dataset} has {num_classes} classes")
    logger.info("data: %s %s, %d images (%s)%s; %d classes", cfg.dataset, cfg.data_path or "(generated)",
                train_info["num_samples"], train_info["split"],
                f" per rank x {group_size} ranks (rank {rank}: images {rank}, {rank + group_size}, ...)"
                if group_size > 1 else "", num_classes)
    if val_info:
        logger.info("validation: %d images (%s)", val_info["num_samples"], val_info["split"])

    net = build_network(cfg, cfg.arch, num_classes)
    pretrained_sha256 = None  # recorded in the checkpoints: what they were fine-tuned from (a Hub card checks it)
    if cfg.pretrained_ckpt and resume_state is None:  # a resume restores everything from its own checkpoint
        load_pretrained(net, cfg.pretrained_ckpt, cfg.arch, identity(cfg, cfg.arch), cfg.new_classifier)
        pretrained_sha256 = ckpt_io.file_sha256(cfg.pretrained_ckpt)
    elif cfg.pretrained_ckpt:
        pretrained_sha256 = ckpt_io.meta_value(resume_state, "pretrained_sha256")
    if cfg.dirac:  # before freezing: the swap makes new parameters (alpha, beta), which must freeze too
        pretrained = bool(cfg.pretrained_ckpt) and resume_state is None
        apply_dirac(net, keep_function=pretrained)
        if pretrained:
            logger.info("dirac: starting at alpha 0, beta 1 (W_eff = the pretrained weights)")
    calibrate, deploy_params = None, None
    if cfg.qat:
        net, calibrate, deploy_params = quantization_aware(cfg, net, num_classes)
    try:
        frozen = freeze_stages(net, cfg.freeze_stages)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if frozen:
        logger.info("frozen: the stem and stages 1..%d (%d parameters, BatchNorm statistics fixed)",
                    cfg.freeze_stages, frozen)
    objective = apply_precision(build_objective(cfg, net, num_classes), cfg.amp_level)
    if cfg.amp_level != "O0":
        logger.info("mixed precision %s (teacher and student alike; losses in float32), %s loss scale %g",
                    cfg.amp_level, cfg.loss_scale_type, cfg.loss_scale)
    deployable = objective.deployable
    trainable = {n: p for n, p in objective.parameters_and_names() if p.requires_grad}
    logger.info("network: %s, %.3fM parameters (%s); procedure %s", cfg.arch,
                sum(p.size for p in deployable.trainable_params()) / 1e6,
                "with shortcuts" if deployable.residual else f"plain, plain_variant {cfg.plain_variant}",
                cfg.procedure)

    steps_per_epoch = train_ds.get_dataset_size()
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    base_lr = cfg.lr * group_size if cfg.lr_scale_with_workers else cfg.lr
    if group_size > 1:
        logger.info("learning rate %g for a global batch of %d (%d per rank x %d)%s", base_lr,
                    cfg.batch_size * group_size, cfg.batch_size, group_size,
                    " = lr x workers (lr_scale_with_workers)" if cfg.lr_scale_with_workers else
                    " (not scaled with the workers; lr_scale_with_workers=true scales it)")
    if resume_state is not None:
        check_resumed_schedule(cfg, resume_state, steps_per_epoch)
    lrs = lr_per_step(base_lr, cfg.lr_schedule, cfg.epochs, steps_per_epoch, cfg.lr_milestones, cfg.lr_gamma,
                      cfg.warmup_epochs)
    backbone = backbone_parameters(deployable)
    optimizer = create_optimizer(trainable, lrs, cfg.momentum, cfg.nesterov, cfg.weight_decay,
                                 cfg.wd_exclude_bn_bias, scaled=backbone, lr_scale=cfg.backbone_lr_scale)
    if cfg.backbone_lr_scale != 1.0:
        logger.info("learning rate x %g for the network's %d parameters outside its classifier",
                    cfg.backbone_lr_scale, len(backbone))

    start_epoch, best_acc = 0, -1.0
    if resume_state is not None:
        state, resume_state = resume_state, None  # once loaded, the host copy (ResNet-50: ~300 MB) is not kept
        ckpt_io.load_network(deployable, state, "resume checkpoint", cfg.resume, cfg.arch,
                             {**identity(cfg, cfg.arch), "procedure": cfg.procedure})
        ckpt_io.load_extra_state(objective.extra_state(), state, cfg.resume)
        ckpt_io.load_optimizer(optimizer, objective, state, cfg.resume)
        start_epoch = int(ckpt_io.meta_value(state, "epoch", 0))
        best_acc = float(ckpt_io.meta_value(state, "best_acc", -1.0))
        del state
        logger.info("resumed from %s: %d epochs done, best val top-1 %.2f%%", cfg.resume, start_epoch, best_acc)

    window = WindowSums(len(objective.term_names))
    chunk = sink_size(steps_per_epoch, cfg.log_interval) if sink else cfg.log_interval
    if sink:
        logger.info("data sink: %d steps per device call (log_interval %d adjusted to divide the %d steps of an "
                    "epoch)", chunk, cfg.log_interval, steps_per_epoch)
    # data_sink compiles the step itself; otherwise graph mode compiles it here
    train_step = make_train_step(objective, optimizer, cfg.loss_scale, group_size > 1,
                                 cfg.mode == "graph" and not sink, loss_scale_type=cfg.loss_scale_type,
                                 window=window)
    sink_call = make_sink_call(cfg, train_step, train_ds, chunk, start_epoch) if sink else None
    meta = {**identity(cfg, cfg.arch), "procedure": cfg.procedure, "num_classes": num_classes,
            "dataset": cfg.dataset, "steps_per_epoch": steps_per_epoch, "schedule_epochs": cfg.epochs}
    if pretrained_sha256:
        meta["pretrained_sha256"] = pretrained_sha256
    if cfg.qat:
        meta["quantization_aware"] = qat.RECORD
    if cfg.dirac:
        meta["dirac"] = dirac_record(bool(cfg.pretrained_ckpt))
    return Run(cfg, rank, group_size, train_ds, val_ds, val_info, objective, optimizer, lrs, steps_per_epoch, sink,
               chunk, window, train_step, sink_call, ckpt_io.CheckpointManager(cfg.output_dir, cfg.keep_checkpoint_max),
               meta, start_epoch, best_acc, deploy_params or (lambda: deployable_params(deployable)), calibrate)


def quantization_aware(cfg, net, num_classes):
    """The simulated-INT8 copy of the (pretrained) ``net`` that QAT trains, a function re-measuring its activation
    ranges on ``calib_size`` training images, and one giving its weights in the ordinary checkpoint format."""
    from ..data import calibration_images, native_image_size

    size = native_image_size(cfg.dataset) or cfg.image_size
    images, split = calibration_images(cfg.dataset, cfg.data_path, [1, 3, size, size], num_classes, cfg.calib_size,
                                       cfg.val_split, cfg.num_parallel_workers)
    template, simulated = net, qat.quantization_aware(net)

    def calibrate():
        qat.measure_ranges(simulated, images)

    calibrate()
    logger.info("qat: BatchNorm folded, INT8 simulated (%s); activation ranges measured on %s at the start "
                "and again before every validation, whose top-1 is the simulated INT8 model's",
                qat.RECORD, split)
    return simulated, calibrate, lambda: qat.ordinary_state(simulated, template)


def make_sink_call(cfg, train_step, train_ds, chunk, start_epoch):
    """The data-sink call (``chunk`` steps on the device a call), built once a run: every ``ms.data_sink`` is
    compiled anew on the device. It loops ``train_ds`` without end, shuffled from (seed, first epoch of this
    session): unlike the host loop, a resumed run sees another order than an uninterrupted one, and an epoch cut at
    max_steps_per_epoch goes on where the last one stopped. Not run here (MindSpore has no data sink on CPU)."""
    import mindspore.dataset as ds

    ds.config.set_seed(epoch_seed(cfg.seed, start_epoch))
    return ms.data_sink(train_step, train_ds, sink_size=chunk,
                        jit_config=ms.JitConfig() if cfg.mode == "graph" else None)


def epoch_stepper(run, epoch):
    """``advance(n)``: run the next ``n`` training steps of ``epoch``. The one place where data sink and the
    host loop differ: both call the same step, which adds to the same device-side window sums."""
    if run.sink:
        return lambda n: run.sink_call()
    batches = checked(epoch_iterator(run.train_ds, run.cfg.seed, epoch), "training data")

    def advance(n):
        for _ in range(n):
            images, labels = next(batches)
            run.train_step(images, labels)
    return advance


def train_epoch(run, epoch):
    """One epoch's training steps, with the host reading the device's window sums once every ``run.chunk``
    steps (to log, and to stop at a non-finite loss). Returns the epoch's training record."""
    cfg, names, steps = run.cfg, run.objective.term_names, run.steps_per_epoch
    run.objective.set_train(True)
    record = {"epoch": epoch + 1}
    scheduled = run.objective.start_epoch(epoch)
    record.update(scheduled)
    if "eta" in scheduled:
        logger.info("epoch %d/%d: eta %.4f (mixed-path loss weight), lambda %g", epoch + 1, cfg.epochs,
                    scheduled["eta"], cfg.fd_lambda)
    advance = epoch_stepper(run, epoch)
    loss_sum = correct = 0.0
    term_sums = np.zeros(len(names))
    start = tick = time.time()
    done = 0
    while done < steps:
        n = min(run.chunk, steps - done)
        advance(n)
        loss, n_correct, terms = run.window.take()
        if not np.isfinite(loss):
            raise diverged(cfg, f"the loss became {loss / n}", epoch + 1, f"steps {done + 1}-{done + n}",
                           run.manager)
        done += n
        loss_sum, correct, term_sums = loss_sum + loss, correct + n_correct, term_sums + terms
        now = time.time()
        logger.info("epoch %d/%d step %d/%d loss %.4f %s lr %.5f %.1f img/s", epoch + 1, cfg.epochs, done, steps,
                    loss / n, " ".join(f"{k} {v / n:.4f}" for k, v in zip(names, terms)),
                    run.lrs[min(epoch * steps + done - 1, len(run.lrs) - 1)],
                    n * cfg.batch_size * run.group_size / max(now - tick, 1e-9))
        tick = now
    seconds = time.time() - start
    seen = steps * cfg.batch_size
    record.update({"train_loss": loss_sum / steps, "train_acc": 100.0 * correct / seen,
                   "train_images_per_s": seen * run.group_size / seconds,
                   **{f"train_{k}": v / steps for k, v in zip(names, term_sums)}})
    return record, seconds


def end_epoch(run, record, train_seconds, start, history):
    """Validate, refuse non-finite weights, log, and (rank 0) save the epoch's checkpoints and metrics.json."""
    cfg, epoch = run.cfg, record["epoch"]
    if run.calibrate:  # the ranges export.py's calibration will find for these weights; the next epoch trains
        run.calibrate()  # with them (a resumed run loads them, measured on the weights it loads)
    if run.val_ds is not None:
        val = evaluate(run.deployable, run.val_ds)
        record.update(val_top1=val["top1"], val_top5=val["top5"])
    record["epoch_seconds"] = round(time.time() - start, 1)  # training and validation
    acc = record.get("val_top1", record["train_acc"])
    is_best = acc > run.best_acc
    run.best_acc = max(acc, run.best_acc)
    logger.info("epoch %d/%d done in %.1fs: train loss %.4f acc %.2f%%%s; %.1f img/s", epoch, cfg.epochs,
                train_seconds, record["train_loss"], record["train_acc"],
                f", val top-1 {record['val_top1']:.2f}% top-5 {record['val_top5']:.2f}%" if run.val_ds else "",
                record["train_images_per_s"])
    history.append(record)
    state = {**ckpt_io.network_params(run.deployable), **ckpt_io.optimizer_params(run.optimizer, run.objective),
             **{ckpt_io.TRAIN_STATE_PREFIX + n: p for n, p in run.objective.extra_state().items()}}
    bad = [n for n, p in state.items() if not np.isfinite(p.asnumpy()).all()]
    if bad:  # never save non-finite weights over a good checkpoint
        raise diverged(cfg, f"{len(bad)} parameters became non-finite ({', '.join(bad[:3])}"
                            f"{', ...' if len(bad) > 3 else ''})", epoch, f"step {run.steps_per_epoch}",
                       run.manager)
    logger.info("epoch %d: weights checksum %s (rank %d; the same on every rank of a run)", epoch,
                weights_checksum(run.deployable), run.rank)
    if run.rank == 0:
        metrics = _merge_history(cfg.output_dir, history, run.val_info)
        run.manager.save_epoch(epoch, state, run.deploy_params(),
                               {**run.meta, "epoch": epoch, "best_acc": run.best_acc}, is_best,
                               is_final=epoch == cfg.epochs,
                               before_commit=lambda: write_json(os.path.join(cfg.output_dir, "metrics.json"),
                                                                metrics))
        return metrics
    return {}


def train(run):
    """Train the set-up ``run`` from its start epoch to ``cfg.epochs``; returns the list of epoch metrics."""
    cfg, history, metrics = run.cfg, [], {}
    session_start = time.time()
    for done, epoch in enumerate(range(run.start_epoch, cfg.epochs), 1):
        start = time.time()
        record, train_seconds = train_epoch(run, epoch)
        metrics = end_epoch(run, record, train_seconds, start, history)
        to_go = cfg.epochs - epoch - 1
        if to_go:  # from this session's epochs only: a resumed run may be on another machine
            per_epoch = (time.time() - session_start) / done
            logger.info("epoch %d/%d: %d to go, about %s at %.0f s an epoch (this session's mean)", epoch + 1,
                        cfg.epochs, to_go, format_duration(to_go * per_epoch), per_epoch)
    summary = metrics.get("summary")  # over every session of a resumed run, as best.ckpt is
    if history and summary:
        logger.info("final epoch %d: val top-1 %.2f%% (final.ckpt); best %.2f%% at epoch %d (best.ckpt); "
                    "validation: %s",
                    summary["final_epoch"], summary["final_val_top1"], summary["best_val_top1"],
                    summary["best_epoch"], summary["validation"])
        if summary["best_is_optimistic"]:
            logger.warning("best.ckpt was chosen by accuracy on the official test split, so its accuracy is an "
                           "optimistic estimate; report the final epoch's (%.2f%%, final.ckpt) or hold out a "
                           "validation split (--val_split 0.1)", summary["final_val_top1"])
    return history


def format_duration(seconds):
    """``3 h 05 min``, ``4 min 10 s`` or ``12 s``: a time left, as a person reads it."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def weights_checksum(net):
    """A short fingerprint of a network's trained weights (sum and sum of squares in float64): equal strings on
    every rank show that data-parallel replicas stayed identical. BatchNorm's running statistics are left out:
    each rank keeps its own, from its own shard (as in the MindSpore model zoo); rank 0's are saved."""
    values = [p.asnumpy().astype(np.float64) for p in net.trainable_params()]
    return f"{sum(v.sum() for v in values):.12e}/{sum((v * v).sum() for v in values):.12e}"


def diverged(cfg, what, epoch, where, manager):
    """The error that stops a run whose loss or weights became non-finite (``where``: "steps 5-8" of ``epoch``);
    also written to train.log."""
    kept = (f"the last good checkpoint {manager.last} (epoch {epoch - 1}) is kept" if os.path.isfile(manager.last)
            and epoch > 1 else "no checkpoint had been written yet")
    message = (f"training diverged at epoch {epoch} {where}: {what}. Lower --lr (now {cfg.lr:g}) or add "
               f"--warmup_epochs, and check the data; nothing was saved from this epoch, {kept}")
    runtime.log_to_files(logging.ERROR, message)  # the console gets it once, from the entry point
    return TrainingError(message)


def _merge_history(output_dir, history, val_info=None):
    """metrics.json keeps the epochs of earlier (resumed) sessions of the same run, and a summary: the final
    epoch's validation accuracy beside the best one (which chose best.ckpt)."""
    path = os.path.join(output_dir, "metrics.json")
    old = []
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            old = json.load(f).get("epochs", [])
    epochs = {r["epoch"]: r for r in old}
    epochs.update({r["epoch"]: r for r in history})
    ordered = [epochs[e] for e in sorted(epochs)]
    out = {"epochs": ordered}
    if val_info and all("val_top1" in r for r in ordered):
        best = max(ordered, key=lambda r: r["val_top1"])
        out["summary"] = {"final_epoch": ordered[-1]["epoch"], "final_val_top1": ordered[-1]["val_top1"],
                          "best_epoch": best["epoch"], "best_val_top1": best["val_top1"],
                          "validation": val_info["split"], "best_is_optimistic": val_info["official_test_split"]}
    return out


def run_job(cfg, cpu_note=""):
    """One training job as ``train.py`` runs it: inputs checked, the process context, everything built (the log
    held in memory), then the locked run folder, train.log (rank 0's is the run's summary), config.yaml and
    training. A refused run leaves the disk as it was. Returns the epoch metrics."""
    import yaml

    notes = check_inputs(cfg)
    rank, group_size = runtime.init_context(cfg.device_target, cfg.mode, cfg.seed, cfg.distribute, cfg.cpu_threads)
    runtime.setup_logging(None, rank)
    runtime.hold_log_lines()  # for train.log, once the run folder exists
    if cpu_note:
        logger.info("CPU runtime: %s", "; ".join(filter(None, (cpu_note, runtime.numpy_note))))
    if cfg.dataset == "synthetic":
        logger.info("DEMO: training on generated synthetic images (learnable class patterns), not real data. "
                    "For real training pass --config configs/<recipe>.yaml --data_path DIR")
    logger.info("config: %s", " ".join(f"{k}={v}" for k, v in sorted(cfg.items())))
    for note in notes:
        logger.warning(note)
    run = setup_run(cfg, rank, group_size)  # bad input fails here, with the run folder untouched
    if run.start_epoch >= cfg.epochs:
        logger.info("nothing to do: %s has %d of %d epochs done", cfg.resume, run.start_epoch, cfg.epochs)
        return []
    lock, removed = open_run_folder(cfg, rank)
    try:
        runtime.attach_log_file(os.path.join(cfg.output_dir, "train.log" if rank == 0 else f"train_rank{rank}.log"))
        if removed:
            logger.info("removed unfinished writes of an interrupted run: %s", ", ".join(removed))
        if rank == 0:  # written aside and renamed: a kill never leaves a half config.yaml for --resume to refuse
            write_text(os.path.join(cfg.output_dir, "config.yaml"), yaml.safe_dump(dict(cfg), sort_keys=True))
        history = train(run)
    finally:
        if lock:
            lock.close()
    if history:
        logger.info("finished: %s; checkpoints and metrics.json in %s",
                    ", ".join(f"{k} {v:.4g}" for k, v in history[-1].items() if k != "epoch"), cfg.output_dir)
    return history
