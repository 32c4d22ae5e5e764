"""Configuration: one table of options (name, default, meaning), YAML recipe files, command-line overrides.

Precedence: built-in default < ``--config FILE.yaml`` < ``--key value`` on the command line. Unknown keys and
badly typed or out-of-range values are errors that name the key and what it accepts. Nothing is parsed at
import time; entry points call ``parse_args`` in ``main()``.
"""
import argparse
import difflib
import math
import os
import reprlib
from dataclasses import dataclass

import yaml

from .distill import PROCEDURES
from .errors import ConfigError

_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict, _SHOWN.maxstring, _SHOWN.maxother = 2, 4, 4, 60, 60


def shown(value):
    """A value as an error message quotes it: short, however large the value (a recipe is untrusted input)."""
    return _SHOWN.repr(value)


def _bool(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{shown(value)} is not a boolean (true/false)")


def _int_list(value):
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    text = str(value).strip().strip("[]")
    return [int(v) for v in text.replace(",", " ").split()] if text else []


def _positive(v):
    return None if v > 0 else "must be > 0"


def _non_negative(v):
    return None if v >= 0 else "must be >= 0"


def _fraction(v):
    return None if 0 < v <= 1 else "must be > 0 and <= 1"


@dataclass(frozen=True)
class Option:
    name: str
    default: object
    help: str
    kind: object = None          # converter; inferred from the default when None
    choices: tuple = None
    check: object = None         # value -> error text or None
    scope: str = "all"           # the entry points that take it: "all", or some of "train,eval,export"

    def convert(self, value):
        kind = self.kind or {bool: _bool, int: int, float: float, str: str}[type(self.default)]
        if kind in (int, float):
            what = "an integer" if kind is int else "a number"
            if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
                raise ValueError(f"{shown(value)} is not {what}")
            try:
                number = kind(value)
            except ValueError:
                raise ValueError(f"{shown(value)} is not {what}") from None
            if not math.isfinite(number):
                raise ValueError(f"{shown(value)} is not a finite number")
            return number
        if kind is str and (value is None or isinstance(value, (list, tuple, dict))):  # YAML null, [..], {..}
            raise ValueError(f"{shown(value)} is not a text value")
        return kind(value)


DEVICES = ("CPU", "GPU", "Ascend")

OPTIONS = [
    # what to train
    Option("demo", False, "run the Residual Distillation demo (what `python train.py` without arguments does): a "
           "ResNet-20 teacher, its plain-20 RD student and the plain-20 alone on synthetic data, then a summary; "
           "other keys (epochs, synthetic_train_size, output_dir, ...) apply to all three runs", scope="train"),
    Option("check_only", False, "check the command line, the recipe, the data set's files and the run folder, "
           "then exit without training (scripts/run_distribute_train.sh does this once before it starts workers)",
           scope="train"),
    Option("arch", "resnet20", "network to train (the student for distillation procedures); "
           "see `--list_models`"),
    Option("procedure", "teacher", "teacher: train a ResNet alone; plain: a plain network alone; kd: Hinton "
           "knowledge distillation from teacher_ckpt; fd: feature distillation alone; rd: Residual Distillation",
           choices=PROCEDURES, scope="train"),
    Option("stem", "auto", "imagenet (7x7/2 conv + max-pool) or cifar (3x3/1 conv) stem for resnet18/34/50 and "
           "plain18/34/50; auto picks cifar for 32x32 data sets", choices=("auto", "imagenet", "cifar")),
    Option("plain_variant", "full", "plain networks: full (no shortcut at all) or keep_downsample (the stride-2 "
           "projection blocks keep their shortcut, as in the RD authors' code)", choices=("full", "keep_downsample")),
    # fine-tuning (README "Fine-tuning")
    Option("pretrained_ckpt", "", "start from this network's weights (a best.ckpt, a converted torchvision or Hub "
           "checkpoint; its recorded arch/variant/stem are checked): a classifier of another shape is "
           "re-initialised; no optimizer state, epoch 0 (unlike resume)", scope="train"),
    Option("new_classifier", False, "with pretrained_ckpt: start the classifier afresh even when it has the "
           "checkpoint's number of classes (a new task with as many classes)", scope="train"),
    Option("freeze_stages", 0, "freeze the stem and stages 1..k (weights and BatchNorm statistics); 0: none",
           check=_non_negative, scope="train"),
    Option("backbone_lr_scale", 1.0, "learning-rate multiplier for every parameter of the trained network but its "
           "classifier (e.g. 0.1 when fine-tuning)", check=_positive, scope="train"),
    # distillation (procedures kd, fd, rd)
    Option("teacher_arch", "auto", "the frozen teacher's network; auto: resnetN for student plainN", scope="train"),
    Option("teacher_ckpt", "", "trained teacher weights (required for kd, fd and rd)", scope="train"),
    Option("rd_variant", "paper", "paper: CE + eta * sum CE(mixed paths) + lambda * FD (the method as published); "
           "ta / joint: the authors' released-code losses (README, 'Residual Distillation')",
           choices=("paper", "ta", "joint"), scope="train"),
    Option("injection_points", [], "stages after which the student's feature enters the teacher, e.g. 1,2,3; "
           "empty: every stage but the last", kind=_int_list, scope="train"),
    Option("eta_min", 0.5, "mixed-path loss weight eta: cosine from 1 down to eta_min ...", check=_non_negative,
           scope="train"),
    Option("eta_epochs", 60, "... over this many epochs, then constant", check=_positive, scope="train"),
    Option("fd_lambda", 0.001, "weight lambda of the margin-based feature distillation (0.001 for 32x32 inputs, "
           "0.0001 for 224x224; 0: off)", check=_non_negative, scope="train"),
    Option("kd_alpha", 0.9, "kd: weight of the distillation term", check=_non_negative, scope="train"),
    Option("kd_temperature", 4.0, "kd: softmax temperature", check=_positive, scope="train"),
    Option("dirac", False, "student convolutions parametrised as diag(a)*identity + diag(b)*W (a=1, b=0.1; from a "
           "pretrained_ckpt a=0, b=1, which starts at the pretrained network), folded into ordinary convolutions "
           "in the saved student; a and b get no weight decay", scope="train"),
    Option("qat", False, "quantization-aware fine-tuning of a trained plain network (pretrained_ckpt): BatchNorm "
           "folded, convolutions and activations fake-quantized as export.py's INT8 ONNX model computes them "
           "(MinMax ranges measured on calib_size training images before every validation); validation is "
           "simulated INT8; the checkpoints are ordinary ones, to export with --quantize int8 (docs/deployment.md, "
           "\"Quantization-aware fine-tuning\")", scope="train"),
    # data
    Option("dataset", "synthetic", "cifar10, cifar100, imagefolder (train/ and val/ class folders) or synthetic "
           "(generated, for demos)", choices=("cifar10", "cifar100", "imagefolder", "synthetic")),
    Option("data_path", "", "data set folder (CIFAR binary files or an image folder root)", scope="train,eval"),
    Option("val_split", "auto", "where validation images come from: auto, test, none, data_batch_N (cifar10) or "
           "a fraction such as 0.1 held out of the training set (export: kept out of the calibration images)",
           scope="train,eval,export"),
    Option("num_classes", 0, "number of classes; 0 takes it from the data set", check=_non_negative),
    Option("image_size", 224, "input size for image folders (CIFAR and synthetic are 32)", check=_positive),
    Option("hflip", True, "training augmentation: random horizontal flips; false for data whose class a mirror "
           "image changes (digits, text)", scope="train"),
    Option("crop_scale_min", 0.08, "image folders' training crop: a random part of at least this fraction of the "
           "image's area, resized to image_size (0.08 as for ImageNet; larger for small or centred objects)",
           check=_fraction, scope="train"),
    Option("batch_size", 128, "images per step per device", check=_positive, scope="train,eval"),
    Option("num_parallel_workers", 2, "dataset engine workers for decoding and augmentation", check=_positive,
           scope="train,eval"),
    Option("train_subset", 0, "train on a fixed subset of this many training images (the same images whatever "
           "the seed; 0: all), e.g. for short studies", check=_non_negative, scope="train,eval"),
    Option("synthetic_train_size", 2048, "synthetic data set: training images", check=_positive, scope="train,eval"),
    Option("synthetic_val_size", 512, "synthetic data set: validation images", check=_positive, scope="train,eval"),
    # device and run
    Option("device_target", "CPU", "CPU, GPU or Ascend", choices=DEVICES),
    Option("mode", "graph", "graph (compiled, fast) or pynative (eager, for debugging)",
           choices=("graph", "pynative")),
    Option("distribute", False, "data-parallel run over the msrun / rank-table process group (see "
           "scripts/run_distribute_train.sh)", scope="train"),
    Option("lr_scale_with_workers", False, "distributed: multiply lr by the number of workers (linear scaling for "
           "the larger global batch); false: lr is used as given", scope="train"),
    Option("cpu_threads", 0, "CPU kernel threads per process (0: MindSpore's default)", check=_non_negative),
    Option("seed", 1, "random seed (weights; each epoch's shuffling and augmentation derive from it)",
           check=lambda v: None if 0 <= v < 2 ** 32 else "must be between 0 and 4294967295"),
    Option("output_dir", "", "where logs and checkpoints go; empty: a new outputs/<procedure>_<arch>_<time> "
           "folder. An existing run folder is never overwritten: resume it or pick another", scope="train"),
    Option("resume", "", "continue a run: a checkpoint path, or 'auto' for <output_dir>/last.ckpt", scope="train"),
    # optimisation
    Option("epochs", 3, "training epochs (alias: epoch_size). On --resume: more epochs extend a step schedule "
           "(its milestones are epochs); a cosine schedule keeps the length it started with", check=_positive,
           scope="train"),
    Option("max_steps_per_epoch", 0, "stop each epoch after this many steps (0: the whole epoch); for smoke "
           "tests", check=_non_negative, scope="train"),
    Option("lr", 0.1, "peak learning rate (per batch_size, not rescaled for more devices)", check=_positive,
           scope="train"),
    Option("lr_schedule", "step", "step (x lr_gamma at lr_milestones) or cosine (to 0)",
           choices=("step", "cosine"), scope="train"),
    Option("lr_milestones", [], "epochs at which the step schedule multiplies the lr by lr_gamma, e.g. 100,150",
           kind=_int_list, scope="train"),
    Option("lr_gamma", 0.1, "step schedule factor", check=_positive, scope="train"),
    Option("warmup_epochs", 0, "linear warm-up epochs before the schedule", check=_non_negative, scope="train"),
    Option("momentum", 0.9, "SGD momentum", check=_non_negative, scope="train"),
    Option("nesterov", True, "Nesterov momentum (as the paper's code)", scope="train"),
    Option("weight_decay", 5e-4, "L2 weight decay", check=_non_negative, scope="train"),
    Option("wd_exclude_bn_bias", False, "no weight decay on BatchNorm parameters and biases", scope="train"),
    Option("amp_level", "O0", "mixed precision of teacher and student alike: O0 (float32), O2 (float16, BatchNorm "
           "float32) or O3 (all float16); losses always float32. Ascend/GPU; forced to O0 on CPU",
           choices=("O0", "O2", "O3"), scope="train"),
    Option("loss_scale_type", "static", "static (a fixed loss_scale) or dynamic (start at loss_scale, halve and skip "
           "the step on overflow, double after 1000 finite steps)", choices=("static", "dynamic"), scope="train"),
    Option("loss_scale", 1.0, "loss scale (1: off; e.g. 1024 static, or 65536 as dynamic's start with O2/O3)",
           check=_positive, scope="train"),
    # logging and checkpoints
    Option("log_interval", 20, "log loss, lr and images/s every N steps (the mean over those steps): the only "
           "points, with the epoch's end, where the host waits for the device", check=_positive, scope="train"),
    Option("dataset_sink_mode", "auto", "run steps in data-sink calls on the device (log_interval steps each, "
           "adjusted to divide the epoch): auto = on for Ascend/GPU, off on CPU (MindSpore has no data sink on "
           "CPU)", choices=("auto", "true", "false"), scope="train"),
    Option("keep_checkpoint_max", 3, "per-epoch checkpoints to keep besides last.ckpt and best.ckpt",
           check=_non_negative, scope="train"),
    # evaluation
    Option("ckpt_file", "", "checkpoint to evaluate (eval.py) or export (export.py)", scope="eval,export"),
    Option("mindir", "", "eval.py: evaluate this exported MindIR file (MindSpore) instead of a checkpoint",
           scope="eval"),
    Option("onnx", "", "eval.py: evaluate this exported ONNX file (onnxruntime) instead of a checkpoint",
           scope="eval"),
    Option("mnn", "", "eval.py: evaluate this .mnn file (export.py --file_format MNN) with MNN's runtime instead of "
           "a checkpoint (pip install -e '.[mnn]')", scope="eval"),
    Option("output_json", "", "where eval writes its JSON; empty: beside the checkpoint", scope="eval"),
]
OPTIONS += [
    # export (export.py): model-zoo flags
    Option("file_name", "", "export: output path without suffix (.mindir/.onnx/.mnn/.air is added); default "
           "<arch> beside the checkpoint", scope="export"),
    Option("file_format", "MINDIR", "export: MINDIR (MindSpore, MindSpore Lite), ONNX (onnxruntime; Ascend ATC "
           "--framework=5), MNN (the mobile engine MNN: the ONNX export converted by MNN's converter; pip install "
           "-e '.[mnn]') or AIR (Ascend only; ATC --framework=1)", choices=("MINDIR", "ONNX", "MNN", "AIR"),
           scope="export"),
    Option("export_batch_size", 1, "export: batch dimension of the exported input (on export.py's command line "
           "also --batch_size, as the model zoo spells it; a recipe's batch_size is the training batch and does "
           "not reach export)", check=_positive, scope="export"),
    Option("height", 0, "export: input height (0: 32 for CIFAR-sized data, else image_size)", check=_non_negative,
           scope="export"),
    Option("width", 0, "export: input width (0: as height)", check=_non_negative, scope="export"),
    Option("fold_bn", True, "export: fold BatchNorm into the preceding convolutions (the deployed graph is conv+bias, "
           "ReLU, pooling, dense)", scope="export"),
    Option("overwrite", False, "export: replace an existing output file", scope="export"),
    # INT8 (export.py --quantize int8; docs/deployment.md)
    Option("quantize", "none", "export: int8 writes an INT8 ONNX model (<file_name>.int8.onnx; onnxruntime's "
           "post-training quantization, QDQ, per-channel int8 weights) calibrated on calib_data; needs file_format "
           "ONNX and the onnx package (pip install -e '.[quant]')", choices=("none", "int8"), scope="export"),
    Option("calib_data", "", "export --quantize int8: the data set folder (of `dataset`) whose training split "
           "calibrates the activation ranges, with the evaluation transform", scope="export"),
    Option("calib_size", 512, "export --quantize int8 and train --qat: number of calibration images",
           check=_positive, scope="train,export"),
    Option("calib_method", "minmax", "export --quantize int8: activation range from the calibration images' "
           "minimum and maximum, an entropy (KL) criterion or a percentile", choices=("minmax", "entropy",
                                                                                     "percentile"), scope="export"),
    Option("quant_activations", "uint8", "export --quantize int8: activation type. uint8: what onnxruntime's x86 "
           "CPU provider fuses completely (shortcut additions included); int8: symmetric, as many NPUs want",
           choices=("uint8", "int8"), scope="export"),
    Option("first_conv_weights", "uint8", "export --quantize int8: weights of the convolution that reads the "
           "image. uint8: onnxruntime then runs it with a kernel that does not saturate on x86 CPUs without VNNI "
           "(with int8 weights there, those CPUs lose accuracy: README \"INT8\"); int8: symmetric int8 weights "
           "throughout, for runtimes that want them", choices=("uint8", "int8"), scope="export"),
    Option("onnx_file", "", "export --quantize int8: quantize this float ONNX file (written by export.py) instead "
           "of exporting ckpt_file", scope="export"),
]
ALIASES = {"epoch_size": "epochs"}
# command-line spellings of one entry point only (a recipe key keeps one meaning everywhere)
COMMAND_LINE_ALIASES = {"export": {"batch_size": "export_batch_size"}}

# What a --resume may change: more epochs, where things are read and written, logging, and how steps are computed
# on the machine at hand. Every other training key defines the experiment (data, batch, step cap, seed, schedule,
# losses, networks) and must equal what the run recorded in its config.yaml.
RESUME_MAY_CHANGE = frozenset({
    "epochs", "resume", "output_dir", "config", "demo", "check_only", "data_path", "teacher_ckpt", "log_interval",
    "keep_checkpoint_max", "num_parallel_workers", "cpu_threads", "device_target", "mode", "dataset_sink_mode",
    "amp_level", "loss_scale", "loss_scale_type",
})


class Config(dict):
    """A dict whose keys are also attributes (``cfg.lr``)."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        self[key] = value


def options_for(scope):
    return [o for o in OPTIONS if o.scope == "all" or scope in o.scope.split(",")]


def _validate(option, value, source):
    try:
        value = option.convert(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{option.name}: {exc} (from {source}); {option.help}") from None
    if option.choices and value not in option.choices:
        raise ConfigError(f"{option.name}={shown(value)} (from {source}) is not one of "
                          f"{', '.join(option.choices)}")
    if option.check:
        problem = option.check(value)
        if problem:
            raise ConfigError(f"{option.name}={shown(value)} (from {source}) {problem}")
    return value


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice (plain YAML would silently keep the last value) and aliases: a
    recipe is a flat mapping of values, and nested aliases make a few hundred bytes stand for billions of values
    (which any message quoting them would try to print)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(f"a YAML alias (*{event.anchor}, line {event.start_mark.line + 1}); a recipe is a flat "
                              f"mapping of key: value, write the value out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"key '{key}' is given twice (line {key_node.start_mark.line + 1}); keep one")
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(path):
    """Read a recipe file: a flat mapping of known keys. Returns {key: raw value}."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path} does not exist")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.load(f, Loader=_UniqueKeyLoader)  # a SafeLoader: no Python object tags
        except ConfigError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of key: value, not {type(data).__name__}")
    known = {o.name for o in OPTIONS}
    out = {}
    for key, value in data.items():
        key = ALIASES.get(key, key)
        if key not in known:
            hint = difflib.get_close_matches(str(key), known, n=1)
            raise ConfigError(f"config file {path}: unknown key '{key}'"
                              + (f" (did you mean '{hint[0]}'?)" if hint else "")
                              + "; `--help` lists the keys")
        out[key] = value
    return out


def build_parser(scope, description):
    # the description keeps its line breaks (usage examples); the options show their defaults
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="", help="YAML recipe whose keys set the defaults below")
    parser.add_argument("--list_models", action="store_true", help="print the known network names and exit")
    for option in options_for(scope):
        names = ["--" + option.name] + ["--" + a for a, t in ALIASES.items() if t == option.name] + \
            ["--" + a for a, t in COMMAND_LINE_ALIASES.get(scope, {}).items() if t == option.name]
        default = option.default if not isinstance(option.default, list) else ",".join(map(str, option.default))
        extra = f" [choices: {', '.join(option.choices)}]" if option.choices else ""
        parser.add_argument(*names, dest=option.name, default=argparse.SUPPRESS, metavar="V",
                            help=f"{option.help}{extra} (default: {default!r})")
    return parser


def parse_args(argv, scope, description):
    """Parse the command line of an entry point. Returns (Config, parsed argparse namespace)."""
    parser = build_parser(scope, description)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        flag = next((u for u in unknown if u.startswith("-")), unknown[0])
        known = [a for action in parser._actions for a in action.option_strings]
        hint = difflib.get_close_matches(flag.split("=", 1)[0], known, n=1)
        raise ConfigError(f"unknown argument '{flag}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                          + "; `--help` lists the options")
    values = {o.name: o.default for o in options_for(scope)}
    sources = {}
    if args.config:
        for key, value in load_yaml(args.config).items():
            if key in values:  # keys for the other entry point are allowed in shared recipes
                values[key], sources[key] = value, args.config
    for option in options_for(scope):
        if option.name in vars(args):
            values[option.name], sources[option.name] = getattr(args, option.name), "command line"
    cfg = Config()
    for option in options_for(scope):
        cfg[option.name] = _validate(option, values[option.name], sources.get(option.name, "default"))
    cfg["config"] = args.config
    return cfg, args
