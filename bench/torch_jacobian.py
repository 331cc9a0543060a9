"""The same input Jacobians in PyTorch, for the side-by-side ratio in bench/run.ts.

Usage: /usr/bin/python3 bench/torch_jacobian.py <model> <threads> <B> [<B> ...]
Prints one JSON line per (B, strategy). Architectures match bench/models.ts (eval mode).
"""
import json
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class MnistCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.a = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.abn = nn.BatchNorm2d(cout)
        self.b = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bbn = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = self.bbn(self.b(F.relu(self.abn(self.a(x)))))
        return F.relu(h + (x if self.short is None else self.short(x)))


class CifarResnet(nn.Module):
    def __init__(self, widths=(16, 32, 64)):
        super().__init__()
        self.stem = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.stembn = nn.BatchNorm2d(widths[0])
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(Block(cin, w, 1 if i == 0 else 2))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(widths[-1], 10)

    def forward(self, x):
        x = self.blocks(F.relu(self.stembn(self.stem(x))))
        return self.fc(x.mean(dim=(2, 3)))


def jac_loop(model, x):
    """One forward, C backward passes with retain_graph: the fastest PyTorch loop."""
    x = x.clone().requires_grad_(True)
    logp = F.log_softmax(model(x), dim=1)
    rows = []
    for c in range(logp.shape[1]):
        (g,) = torch.autograd.grad(logp[:, c].sum(), x, retain_graph=True)
        rows.append(g)
    return torch.stack(rows, 1)


def jac_vmap(model, x):
    from functorch import jacrev, vmap

    f = lambda xi: F.log_softmax(model(xi.unsqueeze(0)), dim=1).squeeze(0)
    return vmap(jacrev(f))(x)


def median_ms(fn, model, x):
    """Median wall time of fn(model, x) in ms: up to 5 runs, at least one, about 3 s (warm up first)."""
    times, start = [], time.perf_counter()
    while len(times) < 5 and (not times or time.perf_counter() - start < 3):
        t0 = time.perf_counter()
        fn(model, x)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] * 1000


def main():
    name, threads, bs = sys.argv[1], int(sys.argv[2]), [int(b) for b in sys.argv[3:]]
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    model, shape = (MnistCnn(), (1, 28, 28)) if name == "mnist-cnn" else (CifarResnet(), (3, 32, 32))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    strategies = (("loop-retain-graph", jac_loop), ("vmap-jacrev", jac_vmap))
    for B in bs:
        x = torch.randn(B, *shape)
        # Warm-up on the same batch, as the tfjs side does, with both strategies before timing either:
        # PyTorch's speed depends on the state its allocations left behind (measured: B = 32 alone in
        # a fresh process ran at 2/3 of its speed after a run of vmap-jacrev had grown the heap).
        usable = []
        for strategy, fn in strategies:
            try:
                fn(model, x)
                usable.append((strategy, fn))
            except Exception as e:  # functorch may be missing
                print(json.dumps({"model": name, "B": B, "strategy": strategy, "error": str(e)}), flush=True)
        for strategy, fn in usable:
            med = median_ms(fn, model, x) / 1000
            print(json.dumps({"model": name, "B": B, "strategy": strategy, "threads": threads,
                              "torch": torch.__version__, "medianMs": round(med * 1000, 1),
                              "rowsPerSec": round(B * 10 / med, 1),
                              "peakRssMB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}),
                  flush=True)

if __name__ == "__main__":
    main()
