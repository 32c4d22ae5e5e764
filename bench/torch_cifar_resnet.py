"""Cross-check of the CIFAR-10 teacher recipe in PyTorch (an independent implementation), ResNet-20 or -56.

Why: the converged study's MindSpore ResNet-20 ends at 86.19% (30 epochs) / 87.92% (60 epochs) on data_batch_5,
under the 89% mark set for it. This script trains the same network (He et al. CIFAR ResNet-20 or -56, projection
shortcuts where width changes, Kaiming-normal fan-out init, BN momentum 0.1) with the same recipe
(data_batch_1..4, RandomCrop 32 pad 4 + flip, CIFAR mean/std, batch 128 drop-last, SGD Nesterov 0.9, wd 5e-4 on
all parameters, lr 0.1, 1 epoch linear warm-up then per-step cosine to 0) and validates on data_batch_5 each
epoch, so the two curves can be put side by side epoch by epoch. Not part of the package and not a dependency:
it needs torch (CPU build) in an environment of its own. (It was torch_resnet20.py until ResNet-56 was added.)

    python bench/torch_cifar_resnet.py ../shared/data/cifar-10-batches-bin --epochs 30 --out OUT.json
    # the first 5 epochs of the 60-epoch ResNet-56 schedule (a rerun with a larger --stop_after continues)
    python bench/torch_cifar_resnet.py DATA --arch resnet56 --epochs 60 --stop_after 5 --out OUT.json
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch_reference import NETS, build_models  # bench/ is on sys.path when run as a script

MEAN = np.array((0.4914, 0.4822, 0.4465), np.float32)[:, None, None]
STD = np.array((0.2470, 0.2435, 0.2616), np.float32)[:, None, None]
BATCH, BASE_LR = 128, 0.1  # the MindSpore recipe's (configs/cifar10_converged.yaml)


def load(root, files):
    raw = np.concatenate([np.fromfile(os.path.join(root, f), np.uint8).reshape(10000, 3073) for f in files])
    images = (raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255 - MEAN) / STD
    return images, raw[:, 0].astype(np.int64)


def augment(batch, rng):
    # zero padding before normalisation == padding with -mean/std after it
    pad_value = (-MEAN / STD).astype(np.float32)
    n = len(batch)
    padded = np.broadcast_to(pad_value[None], (n, 3, 40, 40)).copy()
    padded[:, :, 4:36, 4:36] = batch
    out = np.empty_like(batch)
    xs, ys, flips = rng.integers(0, 9, n), rng.integers(0, 9, n), rng.random(n) < 0.5
    for i in range(n):
        crop = padded[i, :, ys[i]:ys[i] + 32, xs[i]:xs[i] + 32]
        out[i] = crop[:, :, ::-1] if flips[i] else crop
    return out


ARCHS = ("resnet20", "resnet56")


def cifar_resnet(arch):
    """bench/torch_reference.py's CIFAR ResNet (the throughput reference), with the Kaiming-normal fan-out
    initialisation that resdist's convolutions use (PyTorch's default init differs)."""
    depths, widths, stem, _ = NETS[arch]
    net = build_models(torch, nn)(depths, widths, stem, shortcut=True)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir")
    p.add_argument("--arch", choices=ARCHS, default="resnet20")
    p.add_argument("--epochs", type=int, default=30, help="the schedule's length (the cosine reaches 0 there)")
    p.add_argument("--stop_after", type=int, default=0, metavar="N",
                   help="stop after epoch N of the schedule (0: run it to the end); a rerun continues")
    p.add_argument("--weight_decay", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True, help="metrics JSON, rewritten after every epoch; OUT.pt beside it holds "
                   "the weights and optimizer state of the last epoch, from which a rerun continues")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    xtr, ytr = load(args.data_dir, [f"data_batch_{i}.bin" for i in range(1, 5)])
    xva, yva = load(args.data_dir, ["data_batch_5.bin"])
    net = cifar_resnet(args.arch)
    opt = torch.optim.SGD(net.parameters(), lr=BASE_LR, momentum=0.9, nesterov=True, weight_decay=args.weight_decay)
    steps = len(xtr) // BATCH
    total, warm = args.epochs * steps, steps
    history, first = [], 0
    state_path = os.path.splitext(args.out)[0] + ".pt"
    recipe = {k: getattr(args, k) for k in ("arch", "epochs", "weight_decay", "seed")}
    if os.path.exists(state_path) and os.path.exists(args.out):  # continue an interrupted run
        with open(args.out) as f:
            recorded = {"arch": "resnet20", **json.load(f).get("recipe", {})}  # runs before --arch were ResNet-20
        if recorded != recipe:
            p.error(f"{args.out} was run with {recorded}, not {recipe}: pass those, or another --out")
        state = torch.load(state_path, weights_only=True)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        with open(args.out) as f:
            history = json.load(f)["epochs"][:state["epoch"]]
        first = state["epoch"]
        print(f"continuing after epoch {first}", flush=True)
    step = first * steps
    for epoch in range(first, min(args.epochs, args.stop_after or args.epochs)):
        rng = np.random.default_rng([args.seed, epoch])  # per-epoch order and crops: a continued run is the same run
        net.train()
        order = rng.permutation(len(xtr))
        correct = loss_sum = 0.0
        start = time.time()
        for s in range(steps):
            idx = order[s * BATCH:(s + 1) * BATCH]
            lr = BASE_LR * (step + 1) / warm if step < warm else \
                BASE_LR / 2 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = torch.from_numpy(augment(xtr[idx], rng)), torch.from_numpy(ytr[idx])
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item()
            correct += (logits.argmax(1) == y).sum().item()
        train_s = time.time() - start
        net.eval()
        with torch.no_grad():
            val = sum((net(torch.from_numpy(xva[i:i + 500])).argmax(1).numpy() == yva[i:i + 500]).sum()
                      for i in range(0, len(xva), 500))
        rec = {"epoch": epoch + 1, "train_loss": loss_sum / steps, "train_acc": 100 * correct / (steps * BATCH),
               "val_top1": 100 * float(val) / len(xva), "train_images_per_s": steps * BATCH / train_s}
        history.append(rec)
        print(json.dumps(rec), flush=True)
        torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "epoch": epoch + 1}, state_path + ".tmp")
        os.replace(state_path + ".tmp", state_path)
        with open(args.out + ".tmp", "w") as f:
            json.dump({"recipe": recipe, "torch": torch.__version__, "epochs": history}, f, indent=1)
        os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
