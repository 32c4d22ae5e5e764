#!/usr/bin/env python
"""PyTorch reference: the same training steps as bench/train_throughput.py, in PyTorch eager mode on the CPU.

    pip install torch==2.13.0   # bench only: not a dependency of this project
    python bench/torch_reference.py --nets resnet20,resnet56,resnet18 --procedures plain,rd

Same networks (CIFAR ResNet-20/56 with 1x1-conv projections, ResNet-18 with the CIFAR stem), their plain twins,
same batch sizes, SGD with momentum and weight decay, one fixed in-memory batch (the data pipeline excluded).
"rd" mirrors resdist.distill.rd.ResidualDistillation (paper variant, lambda 0.001): the student once, each
student stage output through the frozen teacher's later stages, feature distillation through a 1x1 conv + BN
connector against the teacher's own feature (computed without gradient). Writes JSON in the format of
train_throughput.py, so bench/runtime_settings.py can put both side by side (--with_torch).
"""
import argparse
import os
import statistics
import sys
import time

from benchutil import save_report  # bench/ is on sys.path when run as a script

# blocks per stage, stage widths, stem width (all with the 3x3 CIFAR stem), batch size
NETS = {"resnet20": ([3, 3, 3], (16, 32, 64), 16, 128),
        "resnet56": ([9, 9, 9], (16, 32, 64), 16, 128),
        "resnet18": ([2, 2, 2, 2], (64, 128, 256, 512), 64, 32)}
PROCEDURES = ("teacher", "plain", "kd", "rd")


def build_models(torch, nn):
    class Block(nn.Module):
        def __init__(self, cin, cout, stride, shortcut):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = shortcut
            self.proj = None
            if shortcut and (stride != 1 or cin != cout):
                self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def preact(self, x):
            out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            if self.shortcut:
                out = out + (x if self.proj is None else self.proj(x))
            return out

        def forward(self, x):
            return torch.relu(self.preact(x))

    class Net(nn.Module):
        def __init__(self, depths, widths, stem, shortcut, num_classes=10):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU())
            self.stages = nn.ModuleList()
            cin = stem
            for i, (depth, width) in enumerate(zip(depths, widths)):
                blocks = [Block(cin if j == 0 else width, width, 2 if (i > 0 and j == 0) else 1, shortcut)
                          for j in range(depth)]
                self.stages.append(nn.Sequential(*blocks))
                cin = width
            self.fc = nn.Linear(cin, num_classes)
            self.num_features = cin

        def stage_outputs_and_preact(self, x):
            x = self.stem(x)
            outs = []
            for stage in self.stages[:-1]:
                x = stage(x)
                outs.append(x)
            for block in self.stages[-1][:-1]:
                x = block(x)
            return outs, self.stages[-1][-1].preact(x)

        def preact_from_stage(self, x, k):
            for stage in self.stages[k:-1]:
                x = stage(x)
            for block in self.stages[-1][:-1]:
                x = block(x)
            return self.stages[-1][-1].preact(x)

        def head(self, preact):
            return self.fc(torch.relu(preact).mean((2, 3)))

        def forward(self, x):
            return self.head(self.stage_outputs_and_preact(x)[1])

    return Net


def build_step(procedure, net, torch, nn):
    depths, widths, stem, _ = NETS[net]
    Net = build_models(torch, nn)
    student = Net(depths, widths, stem, shortcut=(procedure == "teacher"))
    teacher = None
    if procedure in ("kd", "rd"):
        teacher = Net(depths, widths, stem, shortcut=True).eval()  # frozen: running BN statistics
        for p in teacher.parameters():
            p.requires_grad_(False)
    connector = None
    if procedure == "rd":
        connector = nn.Sequential(nn.Conv2d(student.num_features, teacher.num_features, 1, bias=False),
                                  nn.BatchNorm2d(teacher.num_features))
    params = list(student.parameters()) + (list(connector.parameters()) if connector is not None else [])
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    ce = nn.CrossEntropyLoss()
    margin = torch.zeros(1, widths[-1], 1, 1)

    def partial_l2(source, target):
        keep = ((source > target) | (target > margin)).float()
        return ((source - target) ** 2 * keep).sum() / source.shape[0]

    def step(images, labels):
        student.train()
        if procedure in ("teacher", "plain"):
            loss = ce(student(images), labels)
        elif procedure == "kd":
            with torch.no_grad():
                soft = torch.softmax(teacher(images) / 4.0, 1)
            logits = student(images)
            kd = torch.sum(soft * (torch.log(soft + 1e-12) - torch.log_softmax(logits / 4.0, 1)), 1).mean()
            loss = 0.1 * ce(logits, labels) + 0.9 * 16.0 * kd
        else:
            outs, preact = student.stage_outputs_and_preact(images)
            loss = ce(student.head(preact), labels)
            with torch.no_grad():
                _, teacher_preact = teacher.stage_outputs_and_preact(images)
            for k, feature in enumerate(outs, start=1):
                loss = loss + ce(teacher.head(teacher.preact_from_stage(feature, k)), labels)
            loss = loss + 0.001 * partial_l2(connector(preact), teacher_preact)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="resnet20,resnet56,resnet18")
    parser.add_argument("--procedures", default=",".join(PROCEDURES))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pipeline", choices=("excluded",), default="excluded",
                        help="only the in-memory batch is timed here")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                         "torch_reference.json"))
    args = parser.parse_args(argv)
    try:
        import torch
        from torch import nn
    except ImportError:
        print("error: PyTorch is not installed; this reference benchmark needs it "
              "(pip install torch==2.13.0 -- bench only, not a project dependency)", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    nets = [n for n in args.nets.split(",") if n]
    procedures = [p for p in args.procedures.split(",") if p]
    unknown = [n for n in nets if n not in NETS] + [p for p in procedures if p not in PROCEDURES]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    results = []
    for net in nets:
        batch = NETS[net][3]
        images, labels = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
        runs = {}
        for procedure in procedures:
            step = build_step(procedure, net, torch, nn)
            for _ in range(2):
                step(images, labels)  # warm-up
            runs[procedure] = (step, [])
        for _ in range(args.rounds):
            for procedure, (step, times) in runs.items():
                start = time.perf_counter()
                for _ in range(args.steps):
                    step(images, labels)
                times.append(time.perf_counter() - start)
        for procedure, (_, times) in runs.items():
            ips = batch * args.steps / statistics.median(times)
            results.append({"net": net, "procedure": procedure, "batch_size": batch, "pipeline": "excluded",
                            "images_per_s": round(ips, 2)})
            print(f"{net:9s} {procedure:8s} batch {batch:3d} {ips:8.1f} img/s", flush=True)
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__,
              "cpu_runtime": f"PyTorch {torch.__version__} eager, {torch.get_num_threads()} threads",
              "steps": args.steps, "rounds": args.rounds, "results": results}
    save_report(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
