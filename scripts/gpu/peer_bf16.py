#!/usr/bin/env python3
"""How far PyTorch's own bf16 training moves from its f32 training on gotune's reference folders:
the yardstick for gotune's bf16 mode (`gotune parity --device cuda --dtype bf16`).

  python3 peer_bf16.py REF_ROOT [MODEL...]

For each reference model folder (REF_ROOT/qwen3, llama, qwen2 by default) and each of `lora` (5 steps
from ref/lora/adapter_init, AdamW lr 1e-2, wd 0.01, clip 1.0) and `full` (3 steps, the settings of
ref/full_ft.json), trains once in float32 and once with the base in bf16 under autocast (trainable
LoRA weights kept float32, as PEFT users run it; full fine-tuning in bf16 weights as the GPU peer's
bench does), and prints one JSON line: both loss trajectories, the largest relative loss deviation,
and the relative L2 deviation of the first step's gradients (all trainable tensors together).
"""
import json
import os
import sys

import torch


def batch(ref):
    from safetensors.torch import load_file
    b = load_file(os.path.join(ref, "ref", "batch.safetensors"))
    return (b[k].cuda() for k in ("input_ids", "attention_mask", "labels"))


def run(ref, method, dtype):
    import peft
    from transformers import AutoModelForCausalLM
    ids, attn, labels = batch(ref)
    m = AutoModelForCausalLM.from_pretrained(os.path.join(ref, "model"), dtype=dtype,
                                             attn_implementation="eager").cuda()
    if method == "lora":
        m = peft.PeftModel.from_pretrained(m, os.path.join(ref, "ref", "lora", "adapter_init"), is_trainable=True)
        for p in m.parameters():
            if p.requires_grad:
                p.data = p.data.float()
        spec = json.load(open(os.path.join(ref, "ref", "lora", "meta.json")))["train"]
    else:
        for p in m.parameters():
            p.requires_grad_(True)
        spec = json.load(open(os.path.join(ref, "ref", "full_ft.json")))
    params = [p for p in m.parameters() if p.requires_grad]
    betas = tuple(spec.get("betas", (0.9, 0.999)))
    opt = torch.optim.AdamW(params, lr=spec["lr"], betas=betas, eps=spec.get("eps", 1e-8),
                            weight_decay=spec.get("weight_decay", 0.0))
    losses, first = [], None
    for _ in range(len(spec["trajectory"])):
        opt.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=(dtype == torch.bfloat16)):
            logits = m(input_ids=ids, attention_mask=attn).logits
        sl = logits[:, :-1, :].float().reshape(-1, logits.shape[-1])
        loss = torch.nn.functional.cross_entropy(sl, labels[:, 1:].reshape(-1), ignore_index=-100)
        loss.backward()
        if first is None:
            first = [p.grad.detach().double().clone() for p in params]
        torch.nn.utils.clip_grad_norm_(params, spec.get("clip_grad_norm", 1.0))
        opt.step()
        losses.append(loss.item())
    return losses, first


def main():
    root = sys.argv[1]
    names = sys.argv[2:] or ["qwen3", "llama", "qwen2"]
    for name in names:
        ref = os.path.join(root, name)
        for method in ("lora", "full"):
            try:
                l32, g32 = run(ref, method, torch.float32)
                l16, g16 = run(ref, method, torch.bfloat16)
                num = sum(((a - b) ** 2).sum().item() for a, b in zip(g16, g32))
                den = sum((a ** 2).sum().item() for a in g32)
                dev = max(abs(a - b) / abs(a) for a, b in zip(l32, l16))
                print(json.dumps({"bench": "peer_bf16_deviation", "model": name, "method": method, "f32": l32,
                                  "bf16": l16, "max_rel_loss_dev": dev,
                                  "grad_rel_dev": (num / den) ** 0.5 if den > 0 else None}), flush=True)
            except Exception as e:  # one failing case must not hide the others
                print(json.dumps({"bench": "peer_bf16_deviation", "model": name, "method": method,
                                  "error": repr(e)}), flush=True)


if __name__ == "__main__":
    main()
