#!/usr/bin/python3
"""PyTorch reference for MAML on sinusoid regression (Finn, Abbeel and Levine, ICML 2017).

The quality yardstick for metagrad's sinusoid MAML: the paper's setup, written independently of
metagrad so that its figures can be set beside ours.

  tasks     y = A sin(x - phase), A ~ U[0.1, 5], phase ~ U[0, pi], x ~ U[-5, 5] (as
            meta/sinusoid.cpp: x drawn in float32, y computed in double from that x)
  model     MLP 1-40-40-1, ReLU, PyTorch's default nn.Linear init
  training  25 tasks per meta-batch, K = 10 support and 10 query points, one inner SGD step
            (lr 0.01) with create_graph=True (second order), outer Adam lr 1e-3, MSE (mean);
            meta-loss = mean over the meta-batch of the post-update query MSE
  eval      600 new tasks from a fixed seed, K = 10 support and 100 query points, inner SGD
            lr 0.01: query MSE before adaptation and after 1 and 10 steps, each as
            mean +- 1.96 * std / sqrt(600)

The tasks of a meta-batch run as one batched computation (per-task fast weights with a leading
task dimension, torch.baddbmm); that is the same math as a loop over tasks, which --loop runs
instead and --check compares against (one meta-gradient both ways).

Run (Debian's python3 with torch 1.13; one thread):
  /usr/bin/python3 docs/reference/sinusoid_maml_torch.py --iterations 70000 \
      --csv /tmp/quality/torch_sinusoid.csv > /tmp/quality/torch_sinusoid.json
It prints one JSON line on stdout and progress on stderr; --csv writes (iteration, mean
meta-train loss over the preceding 1000 iterations).

--score FILE skips training and scores a checkpoint written by `metagrad train --task sinusoid`
(tensors model.body.0.weight ... model.head.bias) on this script's 600 evaluation tasks, so the
two implementations can be compared on the very same tasks.
"""
import argparse
import json
import math
import sys
from pathlib import Path
import time

import torch
import torch.nn.functional as F

META_BATCH = 25
SHOTS = 10
QUERIES = 10
INNER_LR = 0.01
OUTER_LR = 1e-3
EVAL_TASKS = 600
EVAL_QUERIES = 100
EVAL_STEPS = 10
EVAL_SEED = 20170309  # fixed whatever --seed is, so runs are scored on the same tasks
CSV_EVERY = 1000


def sample_tasks(gen, tasks, shots, queries):
    """x [T, shots + queries, 1] float32 and y alike, split into support and query."""
    amplitude = torch.rand(tasks, 1, 1, generator=gen, dtype=torch.float64) * (5.0 - 0.1) + 0.1
    phase = torch.rand(tasks, 1, 1, generator=gen, dtype=torch.float64) * math.pi
    x = torch.rand(tasks, shots + queries, 1, generator=gen, dtype=torch.float32) * 10.0 - 5.0
    y = (amplitude * torch.sin(x.double() - phase)).float()
    return x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:]


def forward(params, x):
    """One task: params [w1, b1, w2, b2, w3, b3] as nn.Linear stores them."""
    h = F.relu(F.linear(x, params[0], params[1]))
    h = F.relu(F.linear(h, params[2], params[3]))
    return F.linear(h, params[4], params[5])


def forward_batched(params, x):
    """Every task at once: params with a leading task dimension, x [T, N, 1]; x @ W^T + b per task,
    which is F.linear."""
    h = x
    for i in range(0, len(params), 2):
        h = torch.baddbmm(params[i + 1].unsqueeze(1), h, params[i].transpose(1, 2))
        if i + 2 < len(params):
            h = F.relu(h)
    return h


def per_task_mse(output, target):
    return ((output - target) ** 2).mean(dim=(1, 2))


def inner_step_batched(fast, xs, ys, lr, create_graph):
    # Task t's support loss depends only on fast[.][t], so the gradient of the sum with respect
    # to the per-task weights is each task's own gradient.
    loss = per_task_mse(forward_batched(fast, xs), ys).sum()
    grads = torch.autograd.grad(loss, fast, create_graph=create_graph)
    return [p - lr * g for p, g in zip(fast, grads)]


def meta_loss_batched(params, xs, ys, xq, yq):
    tasks = xs.shape[0]
    # expand keeps the shared initial weights in the graph: the meta-gradient sums over tasks.
    fast = [p.unsqueeze(0).expand(tasks, *p.shape) for p in params]
    fast = inner_step_batched(fast, xs, ys, INNER_LR, create_graph=True)
    return per_task_mse(forward_batched(fast, xq), yq).mean()


def meta_loss_loop(params, xs, ys, xq, yq):
    total = 0.0
    for t in range(xs.shape[0]):
        support_loss = F.mse_loss(forward(params, xs[t]), ys[t])
        grads = torch.autograd.grad(support_loss, params, create_graph=True)
        fast = [p - INNER_LR * g for p, g in zip(params, grads)]
        total = total + F.mse_loss(forward(fast, xq[t]), yq[t])
    return total / xs.shape[0]


def evaluate(params):
    gen = torch.Generator().manual_seed(EVAL_SEED)
    xs, ys, xq, yq = sample_tasks(gen, EVAL_TASKS, SHOTS, EVAL_QUERIES)
    fast = [p.detach().unsqueeze(0).expand(EVAL_TASKS, *p.shape).requires_grad_() for p in params]
    by_step = []
    for step in range(EVAL_STEPS + 1):
        with torch.no_grad():
            by_step.append(per_task_mse(forward_batched(fast, xq), yq))
        if step < EVAL_STEPS:
            fast = [p.detach().requires_grad_() for p in inner_step_batched(fast, xs, ys, INNER_LR, False)]

    def summary(losses):
        return {"mean": losses.mean().item(), "ci95": 1.96 * losses.std().item() / math.sqrt(len(losses))}

    return {
        "pre_update_mse": summary(by_step[0]),
        "post_1_step_mse": summary(by_step[1]),
        "post_10_step_mse": summary(by_step[EVAL_STEPS]),
        "mse_by_step": [losses.mean().item() for losses in by_step],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=70000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", help="write (iteration, meta-train loss) every 1000 iterations")
    parser.add_argument("--loop", action="store_true", help="a Python loop over tasks instead of batching")
    parser.add_argument("--check", action="store_true", help="compare batched and looped meta-gradients, then exit")
    parser.add_argument("--score", metavar="FILE", help="evaluate a metagrad sinusoid checkpoint, then exit")
    args = parser.parse_args()

    if args.score:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "fixtures"))
        import safetensors_io  # the repository's own reader, numpy only

        tensors = safetensors_io.load(args.score)
        names = ["body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias", "head.weight", "head.bias"]
        params = [torch.tensor(tensors["model." + n].copy()) for n in names]
        print(json.dumps({"scored": args.score, **evaluate(params)}))
        return

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(1, 40), torch.nn.ReLU(), torch.nn.Linear(40, 40), torch.nn.ReLU(), torch.nn.Linear(40, 1)
    )
    params = list(model.parameters())
    gen = torch.Generator().manual_seed(args.seed)

    if args.check:
        batch = sample_tasks(gen, META_BATCH, SHOTS, QUERIES)
        g_batched = torch.autograd.grad(meta_loss_batched(params, *batch), params)
        g_loop = torch.autograd.grad(meta_loss_loop(params, *batch), params)
        diff = max((a - b).abs().max().item() for a, b in zip(g_batched, g_loop))
        scale = max(b.abs().max().item() for b in g_loop)
        print(json.dumps({"max_abs_diff": diff, "max_abs_grad": scale}))
        return 0 if diff <= 1e-5 * max(scale, 1.0) else 1

    meta_loss = meta_loss_loop if args.loop else meta_loss_batched
    optimizer = torch.optim.Adam(params, lr=OUTER_LR)
    csv = open(args.csv, "w") if args.csv else None
    if csv:
        csv.write("iteration,meta_train_loss\n")
    window, window_sum, last_loss = 0, 0.0, float("nan")
    start = time.time()
    for iteration in range(1, args.iterations + 1):
        loss = meta_loss(params, *sample_tasks(gen, META_BATCH, SHOTS, QUERIES))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        last_loss = loss.item()
        if not math.isfinite(last_loss):
            print(f"iteration {iteration}: meta-train loss {last_loss}", file=sys.stderr)
            return 1
        window += 1
        window_sum += last_loss
        if iteration % CSV_EVERY == 0 or iteration == args.iterations:
            mean = window_sum / window
            if csv:
                csv.write(f"{iteration},{mean:.6f}\n")
                csv.flush()
            elapsed = time.time() - start
            print(f"iteration {iteration}: meta-train loss {mean:.4f}, {iteration / elapsed:.1f} it/s",
                  file=sys.stderr, flush=True)
            window, window_sum = 0, 0.0
    train_s = time.time() - start
    result = {
        "reference": "pytorch maml sinusoid",
        "torch": torch.__version__,
        "iterations": args.iterations,
        "seed": args.seed,
        "batched": not args.loop,
        "final_meta_train_loss": last_loss,
        "eval_tasks": EVAL_TASKS,
        "eval_seed": EVAL_SEED,
        **evaluate(params),
        "train_s": train_s,
        "it_per_s": args.iterations / train_s if train_s > 0 else None,
        "wall_s": time.time() - start,
    }
    print(json.dumps(result))
    if csv:
        csv.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
