"""The geometry benchmark's quantities in PyTorch, for the paired ratios of bench/run.ts.

Usage: /usr/bin/python3 bench/torch_geometry.py <task> <model> <B> <threads>
Prints one JSON line: the best of the implementations tried (an autograd loop and functorch's
vmap(jacrev)), median of up to 5 runs after a warm-up, and peak RSS. Same shapes as
bench/geometry-worker.ts: what each task computes is written next to it below.
"""
import json
import math
import resource
import sys

import torch
import torch.nn.functional as F

from torch_jacobian import CifarResnet, MnistCnn, median_ms


def cov_sqrt(p, k):
    """S with SᵀS = diag p' − p'p'ᵀ (p' = p without class k), float64, from its Cholesky factor."""
    q = torch.cat([p[:k], p[k + 1:]])
    L = torch.linalg.cholesky(torch.diag(q) - torch.outer(q, q))
    return L.T


def factor_cotangents(logits):
    """W_b = S_b U_b, [B, C−1, C]: U_b the rows e_c − e_k (c ≠ k, k the arg-max class), S_b as above."""
    B, C = logits.shape
    p = torch.softmax(logits.double(), 1)
    out = []
    for b in range(B):
        k = int(torch.argmax(logits[b]))
        U = torch.cat([torch.eye(C)[:k], torch.eye(C)[k + 1:]]) - torch.eye(C)[k]
        out.append(cov_sqrt(p[b], k).float() @ U)
    return torch.stack(out)


def factor_from_rows(rows, logits):
    """The (C−1)-row factor S_b D_b from full rows [B, C, n] (input space: n is small enough)."""
    return factor_cotangents(logits) @ rows


# ---- weight space: the local Fisher factor over every weight -------------------------------------
# As infogeo, S is applied to the cotangents on the logits (W_b = S_b U_b), never to d-wide rows:
# with Debian's generic BLAS, S·D alone costs 120 ms per sample for the MNIST CNN's 1.2 M weights.

def fisher_loop(model, x):
    """One forward pass per sample (a batched one would make each backward pass cost the batch), C − 1 backward passes."""
    params = [p for p in model.parameters()]
    rows = []
    for b in range(x.shape[0]):
        s = model(x[b:b + 1])[0]
        W = factor_cotangents(s.detach().unsqueeze(0))[0]
        per = []
        for r in range(W.shape[0]):
            g = torch.autograd.grad(s, params, grad_outputs=W[r], retain_graph=True)
            per.append(torch.cat([t.reshape(-1) for t in g]))
        rows.append(torch.stack(per))
    return torch.stack(rows)


def fisher_vmap(model, x):
    from functorch import jacrev, make_functional_with_buffers, vmap

    fmodel, params, buffers = make_functional_with_buffers(model)
    with torch.no_grad():
        W = factor_cotangents(model(x))
    f = lambda ps, xi, Wi: Wi @ fmodel(ps, buffers, xi.unsqueeze(0)).squeeze(0)
    jac = vmap(jacrev(f), in_dims=(None, 0, 0))(params, x, W)  # tuple of [B, C−1, *shape]
    return torch.cat([j.reshape(j.shape[0], j.shape[1], -1) for j in jac], 2)


# ---- input space -----------------------------------------------------------------------------------

def input_rows(f, x):
    """Rows of ∂f/∂x for every output of f, [B, m, n]: one forward pass, m backward passes."""
    x = x.clone().requires_grad_(True)
    y = f(x)
    rows = [torch.autograd.grad(y[:, i].sum(), x, retain_graph=True)[0].reshape(x.shape[0], -1) for i in range(y.shape[1])]
    return torch.stack(rows, 1), y.detach()


def input_rows_vmap(f, x):
    from functorch import jacrev, vmap

    J = vmap(jacrev(lambda xi: f(xi.unsqueeze(0)).squeeze(0)))(x)
    with torch.no_grad():
        y = f(x)
    return J.reshape(x.shape[0], J.shape[1], -1), y


def data_matrix(rows_fn):
    """localDataMatrix + eig: the factor A (C−1 rows) of G(x), then G's nonzero eigenpairs via A Aᵀ (float64)."""
    def run(model, x):
        J, logits = rows_fn(model, x)
        A = factor_from_rows(J, logits).double()
        lam, U = torch.linalg.eigh(A @ A.transpose(1, 2))
        V = A.transpose(1, 2) @ U / torch.sqrt(lam.clamp_min(1e-300)).unsqueeze(1)
        return lam, V.float()
    return run


def path_step(rows_fn, target):
    """One step of Algorithm 4.1: the log-probability rows, an orthonormal basis of their span (QR, float64), x ← x + η P(target − x)."""
    def run(model, x):
        J, _ = rows_fn(model, x)
        Q, _ = torch.linalg.qr(J.double().transpose(1, 2))  # [B, n, C]
        d = (target - x).reshape(x.shape[0], -1, 1).double()
        step = (Q @ (Q.transpose(1, 2) @ d)).float().reshape(x.shape)
        return x + 0.1 * step
    return run


def volume_effective(features):
    """volumeElement, effective: the Jacobian of the penultimate layer (all its rows) and the sum of the logs of its top 10 singular values."""
    def run(model, x):
        J, _ = input_rows(features, x)
        s = torch.linalg.svdvals(J.double())[:, :10]
        return torch.log(s).sum(1)
    return run


def stability(delta=1.0, c=3):
    """relativeStability at one temperature (delta = 1 px, c = 3, one draw, mean aggregation), as
    the reference diffeo-sota computes it but batched: per image a sine-series displacement field
    (coefficients N(0, 1/r) for r = sqrt(i^2 + j^2) < c + 1/2) scaled by sqrt(T) n, a bilinear remap
    with edges replicated (grid_sample), noise of the same norm, and f = the logits of the clean,
    deformed and noisy images."""
    def run(model, x):
        B, _, n, _ = x.shape
        T = 4 * delta ** 2 / (math.pi * n ** 2 * math.log(c))
        k = torch.arange(1, c + 1, dtype=torch.float32)
        r = (k[:, None] ** 2 + k[None, :] ** 2).sqrt()
        e = (r < c + 0.5).float() / r
        s = torch.sin(math.pi * torch.linspace(0, 1, n)[:, None] * k[None, :])  # [n, c]
        coef = torch.randn(2, B, c, c) * e
        uv = torch.einsum("zbij,xi,yj->zbyx", coef, s, s) * (T ** 0.5) * n  # [2, B, n, n] (dx, dy) in pixels
        ys, xs = torch.meshgrid(torch.arange(n, dtype=torch.float32), torch.arange(n, dtype=torch.float32), indexing="ij")
        gx = ((xs - uv[0]).clamp(0, n - 1)) * 2 / (n - 1) - 1
        gy = ((ys - uv[1]).clamp(0, n - 1)) * 2 / (n - 1) - 1
        tx = F.grid_sample(x, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="border", align_corners=True)
        eta = torch.randn_like(x)
        norm = lambda t: t.reshape(B, -1).norm(dim=1).reshape(B, 1, 1, 1)
        eta = eta * norm(tx - x) / norm(eta)
        with torch.no_grad():
            f0, ft, fn = model(x), model(tx), model(x + eta)
        deno = torch.cdist(f0, f0).pow(2).mean() + 1e-10
        D = (ft - f0).pow(2).mean(0).sum() / deno
        G = (fn - f0).pow(2).mean(0).sum() / deno
        return D / G
    return run


def penultimate(model, name):
    if name == "mnist-cnn":
        def f(x):
            h = F.max_pool2d(F.relu(model.conv2(F.relu(model.conv1(x)))), 2)
            return F.relu(model.fc1(torch.flatten(h, 1)))
        return f
    def f(x):
        h = model.blocks(F.relu(model.stembn(model.stem(x))))
        return h.mean(dim=(2, 3))
    return f


def main():
    task, name, B, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    model, shape = (MnistCnn(), (1, 28, 28)) if name == "mnist-cnn" else (CifarResnet(), (3, 32, 32))
    model.eval()
    x = torch.randn(B, *shape)
    logp = lambda z: F.log_softmax(model(z), 1)
    if task == "fisher":
        impls = (("autograd-loop", fisher_loop), ("vmap-jacrev", fisher_vmap))
    else:
        for p in model.parameters():
            p.requires_grad_(False)
        loop_rows = lambda m, z: input_rows(lambda t: m(t), z)
        vmap_rows = lambda m, z: input_rows_vmap(lambda t: m(t), z)
        logp_loop = lambda m, z: input_rows(logp, z)
        logp_vmap = lambda m, z: input_rows_vmap(logp, z)
        if task == "data-matrix":
            impls = (("autograd-loop", data_matrix(loop_rows)), ("vmap-jacrev", data_matrix(vmap_rows)))
        elif task == "path-step":
            target = torch.randn(B, *shape)
            impls = (("autograd-loop", path_step(logp_loop, target)), ("vmap-jacrev", path_step(logp_vmap, target)))
        elif task == "jacobian":
            impls = (("autograd-loop", lambda m, z: logp_loop(m, z)), ("vmap-jacrev", lambda m, z: logp_vmap(m, z)))
        elif task == "stability":
            impls = (("batched", stability()),)
        elif task == "volume-effective":
            impls = (("autograd-loop", volume_effective(penultimate(model, name))),)
        else:
            raise SystemExit(f"unknown task {task}")
    best = None
    for impl, fn in impls:
        try:
            fn(model, x)  # warm-up
        except Exception as e:  # functorch may be missing or refuse a layer
            print(json.dumps({"task": task, "impl": impl, "error": str(e)[:200]}), file=sys.stderr)
            continue
        med = median_ms(fn, model, x)
        print(json.dumps({"impl": impl, "medianMs": round(med, 1)}), file=sys.stderr)
        if best is None or med < best[1]:
            best = (impl, med)
    print(json.dumps({"task": task, "model": name, "B": B, "threads": threads, "torch": torch.__version__,
                      "impl": best[0], "totalMs": round(best[1], 1), "perSampleMs": round(best[1] / B, 1),
                      "peakRssMB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}), flush=True)


if __name__ == "__main__":
    main()
