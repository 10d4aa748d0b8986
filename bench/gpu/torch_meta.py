#!/usr/bin/env python3
"""The MAML meta-steps of bench_gpu (W-sin, W-omni, W-tf) in PyTorch on the GPU.

    python3 torch_meta.py <out>/<workload>.safetensors <workload>

The file is the one `bench_gpu meta <workload> <out>` writes: metagrad's initial parameters under
their names, the tasks under task.*, and the CPU's loss in the metadata. The computation is that of
bench/bench_meta/torch_workloads.cpp (LibTorch, written functionally as a MAML implementation in
PyTorch would be), so both libraries compute the same losses on the same numbers: second order,
inner gradients with create_graph, fast weights p - lr * g, one task at a time with a backward per
task ("looped"), and for W-sin also the meta-batch as one batched computation ("batched").
Prints "RESULT torch <workload>/torch-cuda/<path> <ms> ms/step" lines (bench/gpu/run.sh's format).
Needs only torch: the safetensors file is parsed here.
"""
import json
import math
import struct
import sys
import time

import torch
import torch.nn.functional as F

# bench_meta's workload definitions (bench/bench_meta/workloads.cpp).
SPECS = {
    "W-sin": dict(inner_steps=1, inner_lr=0.01, regression=True),
    "W-omni": dict(inner_steps=1, inner_lr=0.4, regression=False),
    "W-tf": dict(inner_steps=3, inner_lr=0.1, regression=False, heads=4, pad=0),
}
DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64}


def load_safetensors(path, device):
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
        data = f.read()
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        t = torch.frombuffer(bytearray(data[begin:end]), dtype=DTYPES[entry["dtype"]]).reshape(entry["shape"])
        tensors[name] = t.to(device)
    return tensors, meta


def mlp(names):
    def forward(q, x):
        h = torch.relu(F.linear(x, q["body.0.weight"], q["body.0.bias"]))
        h = torch.relu(F.linear(h, q["body.2.weight"], q["body.2.bias"]))
        return F.linear(h, q["head.weight"], q["head.bias"])

    return forward


def mlp_task_batched(names):
    def linear(x, w, b):
        return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))

    def forward(q, x):
        h = torch.relu(linear(x, q["body.0.weight"], q["body.0.bias"]))
        h = torch.relu(linear(h, q["body.2.weight"], q["body.2.bias"]))
        return linear(h, q["head.weight"], q["head.bias"])

    return forward


def conv4(names):
    blocks = sorted({int(n.split(".")[1]) for n in names if n.startswith("blocks.")})

    def forward(q, x):
        h = x
        for b in blocks:
            p = f"blocks.{b}."
            h = F.conv2d(h, q[p + "conv.weight"], q[p + "conv.bias"], padding=1)
            # Batch statistics, no running statistics: metagrad's transductive BatchNorm.
            h = F.batch_norm(h, None, None, q[p + "bn.weight"], q[p + "bn.bias"], training=True, eps=1e-5)
            h = F.max_pool2d(torch.relu(h), 2)
        return F.linear(h.flatten(1), q["head.weight"], q["head.bias"])

    return forward


def transformer(names, heads, pad):
    layers = sorted({int(n.split(".")[2]) for n in names if n.startswith("encoder.layers.")})

    def forward(q, tokens):
        B, L = tokens.shape
        E = q["pos"].shape[1]
        H, D = heads, E // heads
        is_pad = tokens.eq(pad)
        keep = (1.0 - is_pad.float()).unsqueeze(-1)
        counts = keep.sum(1)
        blocked = is_pad.view(B, 1, 1, L)

        def split(t):
            return t.reshape(B, L, H, D).transpose(1, 2)

        h = F.embedding(tokens, q["embed.weight"]) + q["pos"][:L]
        for l in layers:
            s = f"encoder.layers.{l}."
            n1 = F.layer_norm(h, (E,), q[s + "norm1.weight"], q[s + "norm1.bias"], 1e-5)
            qkv = F.linear(n1, q[s + "self_attn.in_proj_weight"], q[s + "self_attn.in_proj_bias"]).chunk(3, -1)
            scores = torch.matmul(split(qkv[0]) / math.sqrt(D), split(qkv[1]).transpose(-2, -1))
            scores = scores.masked_fill(blocked, -1e30)
            attn = torch.matmul(torch.softmax(scores, -1), split(qkv[2]))
            h = h + F.linear(attn.transpose(1, 2).reshape(B, L, E), q[s + "self_attn.out_proj.weight"],
                             q[s + "self_attn.out_proj.bias"])
            n2 = F.layer_norm(h, (E,), q[s + "norm2.weight"], q[s + "norm2.bias"], 1e-5)
            ff = F.linear(torch.relu(F.linear(n2, q[s + "linear1.weight"], q[s + "linear1.bias"])),
                          q[s + "linear2.weight"], q[s + "linear2.bias"])
            h = h + ff
        h = F.layer_norm(h, (E,), q["encoder.norm.weight"], q["encoder.norm.bias"], 1e-5)
        return F.linear((h * keep).sum(1) / counts, q["head.weight"], q["head.bias"])

    return forward


def sgd_step(fast, loss, lr):
    names = list(fast)
    grads = torch.autograd.grad(loss, [fast[n] for n in names], create_graph=True)
    return {n: fast[n] - lr * g for n, g in zip(names, grads)}


def looped_step(params, forward, loss_fn, tasks, spec):
    for p in params.values():
        p.grad = None
    scale = 1.0 / len(tasks)
    total = 0.0
    for sx, sy, qx, qy in tasks:
        fast = dict(params)
        for _ in range(spec["inner_steps"]):
            fast = sgd_step(fast, loss_fn(forward(fast, sx), sy), spec["inner_lr"])
        loss = loss_fn(forward(fast, qx), qy)
        total += loss.item()
        (loss * scale).backward()
    return total * scale


def batched_sin_step(params, forward, batch, spec):
    for p in params.values():
        p.grad = None
    sx, sy, qx, qy = batch
    T = sx.shape[0]

    def per_task_mse(out, y):
        return (out - y).pow(2).mean((1, 2))

    fast = {n: p.unsqueeze(0).expand(T, *p.shape) for n, p in params.items()}
    for _ in range(spec["inner_steps"]):
        fast = sgd_step(fast, per_task_mse(forward(fast, sx), sy).sum(), spec["inner_lr"])
    loss = per_task_mse(forward(fast, qx), qy).mean()
    loss.backward()
    return loss.item()


def ms_per_step(step):
    step()
    step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    steps = 0
    while steps < 3 or (time.perf_counter() - start < 1.0 and steps < 200):
        step()
        steps += 1
    torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3 / steps


def main():
    path, workload = sys.argv[1], sys.argv[2]
    spec = SPECS[workload]
    device = torch.device("cuda:0")
    torch.backends.cuda.matmul.allow_tf32 = False  # metagrad's default: float32 products in float32
    torch.backends.cudnn.allow_tf32 = False
    tensors, meta = load_safetensors(path, device)
    cpu_loss = float(meta.get("cpu_loss", "nan"))
    batch = [tensors.pop(f"task.{k}") for k in ("support_x", "support_y", "query_x", "query_y")]
    params = {n: t.clone().requires_grad_() for n, t in tensors.items()}
    names = list(params)
    if workload == "W-sin":
        forward = mlp(names)
    elif workload == "W-omni":
        forward = conv4(names)
    else:
        forward = transformer(names, spec["heads"], spec["pad"])
    loss_fn = F.mse_loss if spec["regression"] else F.cross_entropy
    tasks = [tuple(t[i] for t in batch) for i in range(batch[0].shape[0])]

    runs = [("looped", lambda: looped_step(params, forward, loss_fn, tasks, spec))]
    if workload == "W-sin":
        batched_forward = mlp_task_batched(names)
        runs.append(("batched", lambda: batched_sin_step(params, batched_forward, batch, spec)))
    status = 0
    for name, step in runs:
        loss = step()
        if not math.isfinite(loss) or abs(loss - cpu_loss) > 1e-3 * abs(cpu_loss):
            print(f"RESULT torch {workload}/torch-cuda/{name} loss {loss:.6f} differs from metagrad's CPU loss "
                  f"{cpu_loss:.6f}", flush=True)
            status = 1
        ms = ms_per_step(step)
        print(f"RESULT torch {workload}/torch-cuda/{name} {ms:.2f} ms/step", flush=True)
    peak = torch.cuda.max_memory_allocated() / (1 << 20)
    print(f"RESULT torch {workload}/torch-cuda/peak-allocated {peak:.1f} MiB", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
