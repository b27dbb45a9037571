# Regenerates torch_optim.json: parameters after each step of torch.optim
# AdamW and SGD on a fixed quadratic, with clip_grad_norm_ before each step.
# Run with a Python that has torch: /usr/bin/python3 gen_torch_optim.py
import json
import torch

torch.manual_seed(0)
A = torch.tensor([1.0, 4.0, 0.25, 10.0, 2.0, 0.5], dtype=torch.float32)
C = torch.tensor([0.5, -1.0, 3.0, 0.0, -2.0, 1.5], dtype=torch.float32)
P0 = [[1.0, 1.0, -2.0], [0.001, 0.3, -0.7]]

def run(make_opt, steps, max_norm):
    ps = [torch.nn.Parameter(torch.tensor(v, dtype=torch.float32)) for v in P0]
    opt = make_opt(ps)
    out = {"params": [], "norms": []}
    for _ in range(steps):
        opt.zero_grad()
        x = torch.cat([p for p in ps])
        loss = 0.5 * (A * (x - C) ** 2).sum()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(ps, max_norm)
        out["norms"].append(float(norm))
        opt.step()
        out["params"].append([p.detach().tolist() for p in ps])
    return out

cases = {
    "adamw": run(lambda ps: torch.optim.AdamW(
        [{"params": [ps[0]], "lr": 1e-2, "weight_decay": 0.01},
         {"params": [ps[1]], "lr": 4e-2, "weight_decay": 0.0}],
        betas=(0.9, 0.999), eps=1e-8), 5, 1.0),
    "adamw_no_clip": run(lambda ps: torch.optim.AdamW(
        [{"params": ps, "lr": 0.1, "weight_decay": 0.1}], betas=(0.8, 0.95), eps=1e-6), 4, 1e9),
    "sgd_nesterov": run(lambda ps: torch.optim.SGD(
        [{"params": [ps[0]], "lr": 0.05, "weight_decay": 0.01},
         {"params": [ps[1]], "lr": 0.1, "weight_decay": 0.0}],
        momentum=0.9, nesterov=True), 4, 5.0),
}
cases["_about"] = {"torch": torch.__version__, "loss": "0.5*sum(A*(cat(params)-C)^2)",
                   "A": A.tolist(), "C": C.tolist(), "P0": P0}
with open("torch_optim.json", "w") as f:
    json.dump(cases, f, indent=1)
