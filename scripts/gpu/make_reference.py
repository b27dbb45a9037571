#!/usr/bin/env python3
"""Reference data for the model families of issue 20 (Gemma 2/3, Phi-3, Qwen3-MoE, Mixtral).

Usage:
    python3 scripts/gpu/make_reference.py OUTDIR [--tokenizer-dir DIR] [--families a,b] [--device cpu]

Needs torch, transformers (5.x), peft, safetensors. Writes OUTDIR/<family>/ in the layout of
../shared/testdata/reference/qwen3 (see scripts/gpu/README.md). Every family runs inside its own
try/except and prints one JSON line with its status, so one failing family leaves the others.
All numbers are computed in float64 from the float32 weights that model/ holds.
"""

import types
import argparse
import copy
import json
import math
import os
import shutil
import sys
import tempfile
import time
import traceback

import torch
import torch.nn.functional as F

import transformers
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")

# The tokenizer is the qwen3 reference's byte-level BPE: <|endoftext|> pads, <|im_end|> ends a
# turn, and there is no BOS. Every family uses it so the batches are identical across families.
PAD_ID = 2000
EOS_ID = 2002
VOCAB = 2048  # the tokenizer's 2009 ids padded to a multiple of 64

HIDDEN = 64
LAYERS = 2
HEADS = 4
KV_HEADS = 2
INTERMEDIATE = 128
SLIDING_WINDOW = 8  # much shorter than the batch, so the window really cuts
LONGROPE_ORIGINAL_MAX = 16  # the batch is longer, so the long factors are the ones used

# Kept short: the logits of every family are [2, T, 2048] float32.
CONVERSATIONS = [
    [
        {"role": "user", "content": "What does LoRA train?"},
        {"role": "assistant", "content": "Two small matrices."},
    ],
    [
        {"role": "user", "content": "Name a color."},
        {"role": "assistant", "content": "Blue."},
    ],
]
GENERATE_PROMPT = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "What is a cell?"},
]
GENERATE_TOKENS = 16

FULL_FT = {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01, "clip_grad_norm": 1.0, "steps": 3}
LORA_TRAIN = {"lr": 1e-2, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01, "clip_grad_norm": 1.0, "steps": 5}


# ---------------------------------------------------------------------------------------------
# Families
# ---------------------------------------------------------------------------------------------

def common(**kw):
    base = dict(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=512,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        bos_token_id=None,
        attention_dropout=0.0,
        use_cache=True,
    )
    base.update(kw)
    return base


def make_config(cls_name, attempts):
    """The config class and the keyword sets to try, best first.

    transformers 5 moved rope settings into `rope_parameters`; older spellings (`rope_theta`,
    `rope_scaling`, `rope_local_base_freq`) follow it so the script survives either. The first
    set that gives a config and a model that runs a float64 forward pass wins (build_family).
    """
    return getattr(transformers, cls_name), attempts


def drop_unknown(cls, kw, notes):
    """Last resort: drops, one at a time, keys that the error names as unexpected (an optional
    key this version lacks). Dropped keys go into meta.json's notes; config.json shows what the
    model really is."""
    kw = dict(kw)
    for _ in range(len(kw)):
        try:
            return cls(**kw)
        except Exception as e:
            msg = str(e)
            named = [k for k in kw if "'%s'" % k in msg or '"%s"' % k in msg]
            if not named or "unexpected" not in msg.lower():
                raise
            notes.append("%s: dropped %s (%s)" % (cls.__name__, named[0], msg))
            del kw[named[0]]
    return cls(**kw)


def gemma2_config():
    kw = common(
        head_dim=32,
        intermediate_size=INTERMEDIATE,
        hidden_activation="gelu_pytorch_tanh",
        rms_norm_eps=1e-6,
        query_pre_attn_scalar=24,  # not head_dim, so a wrong scale shows
        sliding_window=SLIDING_WINDOW,
        layer_types=["sliding_attention", "full_attention"],
        # Small caps so tanh is far from linear on these logits (real models: 50 and 30).
        attn_logit_softcapping=5.0,
        final_logit_softcapping=10.0,
        tie_word_embeddings=True,
    )
    new = dict(kw, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    old = dict(kw, rope_theta=10000.0)
    return make_config("Gemma2Config", [new, old])


def gemma3_config():
    kw = common(
        head_dim=16,
        intermediate_size=INTERMEDIATE,
        hidden_activation="gelu_pytorch_tanh",
        rms_norm_eps=1e-6,
        query_pre_attn_scalar=20,
        sliding_window=SLIDING_WINDOW,
        layer_types=["sliding_attention", "full_attention"],
        attn_logit_softcapping=None,
        final_logit_softcapping=None,
        tie_word_embeddings=True,
    )
    # Global layers: theta 1e6 with linear scaling 8 (as Gemma 3 4B+); local layers: theta 1e4.
    new = dict(kw, rope_parameters={
        "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
    })
    old = dict(kw, rope_theta=1000000.0, rope_local_base_freq=10000.0,
               rope_scaling={"rope_type": "linear", "factor": 8.0})
    plain = dict(kw, rope_theta=1000000.0, rope_local_base_freq=10000.0)
    return make_config("Gemma3TextConfig", [new, old, plain])


def phi3_config(longrope):
    kw = common(
        intermediate_size=INTERMEDIATE,
        hidden_act="silu",
        rms_norm_eps=1e-5,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        tie_word_embeddings=True,  # as Phi-4-mini
        sliding_window=None,
    )
    if not longrope:
        new = dict(kw, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
        old = dict(kw, rope_theta=10000.0)
        return make_config("Phi3Config", [new, old])
    half = (HIDDEN // HEADS) // 2
    g = torch.Generator().manual_seed(1234)
    short = [round(1.0 + 0.5 * float(x), 4) for x in torch.rand(half, generator=g)]
    # Long factors grow with the dimension index, as published LongRoPE factors do.
    long_ = [round(1.0 + 7.0 * (i / (half - 1)) + 0.3 * float(x), 4) for i, x in enumerate(torch.rand(half, generator=g))]
    kw.update(max_position_embeddings=4 * LONGROPE_ORIGINAL_MAX,
              original_max_position_embeddings=LONGROPE_ORIGINAL_MAX)
    rope = {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": short, "long_factor": long_,
            "original_max_position_embeddings": LONGROPE_ORIGINAL_MAX}
    new = dict(kw, rope_parameters=rope)
    old_rope = {k: v for k, v in rope.items() if k not in ("rope_theta", "original_max_position_embeddings")}
    old = dict(kw, rope_theta=10000.0, rope_scaling=old_rope)
    return make_config("Phi3Config", [new, old])


def qwen3_moe_config():
    kw = common(
        head_dim=32,
        intermediate_size=INTERMEDIATE,
        moe_intermediate_size=32,
        num_experts=4,
        num_experts_per_tok=2,
        # Mixtral covers renormalised top-k weights; this covers the raw softmax weights.
        norm_topk_prob=False,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        output_router_logits=True,
        # Large on purpose: at the usual 0.001 a missing aux loss would hide inside the tolerance.
        router_aux_loss_coef=0.1,
        hidden_act="silu",
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        sliding_window=None,
        use_sliding_window=False,
        attention_bias=False,
    )
    new = dict(kw, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    old = dict(kw, rope_theta=1000000.0)
    return make_config("Qwen3MoeConfig", [new, old])


def mixtral_config():
    kw = common(
        head_dim=16,
        intermediate_size=32,
        num_local_experts=4,
        num_experts_per_tok=2,
        output_router_logits=True,
        router_aux_loss_coef=0.05,
        router_jitter_noise=0.0,
        hidden_act="silu",
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        sliding_window=None,
    )
    new = dict(kw, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    old = dict(kw, rope_theta=1000000.0)
    return make_config("MixtralConfig", [new, old])


# name -> (config builder, gemma-style (1+w) norms, MoE, write the PEFT case)
FAMILIES = {
    "gemma2": (gemma2_config, True, False, True),
    "gemma3_text": (gemma3_config, True, False, True),
    "phi3": (lambda: phi3_config(False), False, False, True),
    # LongRoPE changes only positions: the plain phi3 folder covers LoRA on the fused layers.
    "phi3_longrope": (lambda: phi3_config(True), False, False, False),
    "qwen3_moe": (qwen3_moe_config, False, True, True),
    "mixtral": (mixtral_config, False, True, True),
}
SEEDS = {"gemma2": 20, "gemma3_text": 21, "phi3": 22, "phi3_longrope": 22, "qwen3_moe": 23, "mixtral": 24}


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def num_experts(cfg):
    for attr in ("num_experts", "num_local_experts"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    return 0


def init_weights(model, gemma_norms, n_experts):
    """Random weights that are deliberately not small, so wrong wiring gives large errors."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                if "norm" in name:
                    # Gemma's RMSNorm multiplies by (1 + w): w near 0 is a scale near 1.
                    p.copy_(0.1 * torch.randn_like(p) + (0.0 if gemma_norms else 1.0))
                else:  # biases
                    p.copy_(0.1 * torch.randn_like(p))
            elif "embed_tokens" in name:
                p.copy_(0.5 * torch.randn_like(p))
            else:
                # 2-D linears and 3-D stacked experts alike: std 1/sqrt(last dim). A router
                # [experts, hidden] gets the same, which spreads its logits by about 1.
                p.copy_(torch.randn_like(p) / math.sqrt(p.shape[-1]))


def build_model(cfg, moe):
    """The model with eager attention (the only implementation that honours soft-capping and
    sliding windows everywhere) and, for MoE, the plain per-expert loop, checked by a float64
    forward pass so that a kernel without float64 support is found here, not halfway."""
    errors = []
    options = [{"attn_implementation": "eager"}, {}]
    if moe:
        options.insert(0, {"attn_implementation": "eager", "experts_implementation": "eager"})
    for kwargs in options:
        try:
            if not kwargs:
                cfg._attn_implementation = "eager"
            m = transformers.AutoModelForCausalLM.from_config(cfg, **kwargs).float()
            probe = copy.deepcopy(m).double()
            x = torch.tensor([[1, 2, 3, 4]], dtype=torch.int64)
            with torch.no_grad():
                forward(probe, x, torch.ones_like(x), moe)
            return m, errors
        except Exception as e:
            errors.append("from_config(%s): %s: %s" % (kwargs, type(e).__name__, e))
    raise RuntimeError("model construction failed: " + " | ".join(errors))


def build_family(builder, moe, notes):
    cls, attempts = builder()
    errors = []
    for i, kw in enumerate(attempts + [None]):
        try:
            cfg = drop_unknown(cls, attempts[0], notes) if kw is None else cls(**kw)
            model, build_errors = build_model(cfg, moe)
            notes.extend(errors + build_errors)
            if i > 0:
                notes.append("config spelling %d of %d used" % (i + 1, len(attempts)))
            return cfg, model
        except Exception as e:
            errors.append("%s attempt %d: %s: %s" % (cls.__name__, i + 1, type(e).__name__, e))
    raise RuntimeError("no config/model combination worked: " + " | ".join(errors))


def load_tokenizer(tok_dir):
    try:
        tok = transformers.AutoTokenizer.from_pretrained(tok_dir)
    except Exception as e:
        print("AutoTokenizer failed (%s); using PreTrainedTokenizerFast" % e, file=sys.stderr)
        tok = transformers.PreTrainedTokenizerFast(
            tokenizer_file=os.path.join(tok_dir, "tokenizer.json"),
            eos_token="<|im_end|>", pad_token="<|endoftext|>")
    if not getattr(tok, "chat_template", None):
        with open(os.path.join(tok_dir, "chat_template.jinja"), encoding="utf-8") as f:
            tok.chat_template = f.read()
    return tok


def encode(tok, text):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return [int(i) for i in ids]


def render(tok, messages, generation_prompt):
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def make_batch(tok):
    """Two conversations, the second right-padded; only the last assistant turn is trained."""
    seqs, labels = [], []
    for conv in CONVERSATIONS:
        prompt = encode(tok, render(tok, conv[:-1], True))
        full = encode(tok, render(tok, conv, False))
        if full[:len(prompt)] != prompt:
            raise RuntimeError("the rendered prompt is not a token prefix of the conversation")
        seqs.append(full)
        labels.append([-100] * len(prompt) + full[len(prompt):])
    if len(seqs[1]) >= len(seqs[0]):
        raise RuntimeError("the second conversation must be the shorter (it is the padded one): %d vs %d"
                           % (len(seqs[1]), len(seqs[0])))
    T = len(seqs[0])
    ids = torch.full((2, T), PAD_ID, dtype=torch.int64)
    mask = torch.zeros((2, T), dtype=torch.int64)
    lab = torch.full((2, T), -100, dtype=torch.int64)
    for b, (s, l) in enumerate(zip(seqs, labels)):
        ids[b, :len(s)] = torch.tensor(s)
        mask[b, :len(s)] = 1
        lab[b, :len(l)] = torch.tensor(l)
    prompt_ids = encode(tok, render(tok, GENERATE_PROMPT, True))
    return {"input_ids": ids, "attention_mask": mask, "labels": lab}, len(seqs[1]), prompt_ids


# Set by make_family for the Gemma families. In a right-padded row, a padding query past the
# sliding window (8) sees no key at all; transformers 5.17's eager attention then returns NaN
# for it, the NaN enters the next layer's values, and 0 × NaN spreads it to every position of
# the row (the loss, gradients and trajectories were NaN). A causal model's rows are
# independent, so such batches run one row at a time, each cut to its real tokens; the padding
# positions' logits are written as NaN ("not compared"), and meta.json records it.
PER_ROW = False


def forward(model, input_ids, attention_mask, moe):
    if PER_ROW and input_ids.shape[0] > 1 and not moe:
        rows = []
        for b in range(input_ids.shape[0]):
            n = int(attention_mask[b].sum())
            lg = forward_batch(model, input_ids[b:b + 1, :n], attention_mask[b:b + 1, :n], moe).logits
            pad = torch.full((1, input_ids.shape[1] - n, lg.shape[-1]), float("nan"), dtype=lg.dtype, device=lg.device)
            rows.append(torch.cat([lg, pad], 1))
        return types.SimpleNamespace(logits=torch.cat(rows, 0))
    return forward_batch(model, input_ids, attention_mask, moe)


def forward_batch(model, input_ids, attention_mask, moe):
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    if moe:
        try:
            return model(output_router_logits=True, **kwargs)
        except TypeError:  # the config already asks for router logits
            pass
    return model(**kwargs)


def losses(model, batch, moe, coef):
    """Shifted cross-entropy in float64 (mean over labels != -100) plus coef × aux loss for MoE.

    The cross-entropy is computed here rather than by the model because transformers' loss
    casts the logits to float32 first.
    """
    out = forward(model, batch["input_ids"], batch["attention_mask"], moe)
    logits = out.logits
    shift_logits = logits[:, :-1, :].reshape(-1, logits.shape[-1])
    shift_labels = batch["labels"][:, 1:].reshape(-1)
    count = int((shift_labels != -100).sum())
    ce = F.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="sum") / count
    aux = None
    total = ce
    if moe:
        aux = getattr(out, "aux_loss", None)
        if aux is None:
            raise RuntimeError("the MoE model returned no aux_loss (output_router_logits not honoured)")
        total = ce + coef * aux
    return total, ce, aux, out


def router_margin(out, mask, k):
    """Smallest gap between the k-th and (k+1)-th router logit over the real tokens: a gap near
    zero means a float32 engine may pick other experts than this float64 reference."""
    rl = getattr(out, "router_logits", None)
    if not rl:
        return None
    keep = mask.reshape(-1).bool()
    best = None
    for layer in rl:
        if layer is None:
            continue
        x = layer.reshape(-1, layer.shape[-1])
        if x.shape[0] == keep.shape[0]:
            x = x[keep]
        top = torch.topk(x.double(), k + 1, dim=-1).values
        gap = float((top[:, k - 1] - top[:, k]).min())
        best = gap if best is None else min(best, gap)
    return best


def greedy(model, prompt_ids, moe, device):
    """Greedy decoding without a KV cache: every step runs the whole sequence. For LongRoPE this
    means each step uses the factors its total length selects."""
    ids = list(prompt_ids)
    new, margins = [], []
    with torch.no_grad():
        for _ in range(GENERATE_TOKENS):
            x = torch.tensor([ids], dtype=torch.int64, device=device)
            out = forward(model, x, torch.ones_like(x), moe)
            last = out.logits[0, -1]
            top = torch.topk(last, 2)
            nxt = int(top.indices[0])
            margins.append(float(top.values[0] - top.values[1]))
            new.append(nxt)
            ids.append(nxt)
    return new, margins


def adamw(params, spec):
    return torch.optim.AdamW(params, lr=spec["lr"], betas=tuple(spec["betas"]), eps=spec["eps"],
                             weight_decay=spec["weight_decay"])


def trajectory(model, params, batch, moe, coef, spec):
    opt = adamw(params, spec)
    steps = []
    for i in range(spec["steps"]):
        opt.zero_grad(set_to_none=True)
        total, ce, aux, _ = losses(model, batch, moe, coef)
        total.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, spec["clip_grad_norm"])
        step = {"step": i, "loss": float(total.float()), "grad_norm_before_clip": float(norm)}
        if moe:
            step["ce_loss"] = float(ce.float())
            step["aux_loss"] = float(aux.float())
        steps.append(step)
        opt.step()
    return steps


def train_json(spec, steps):
    return {"optimizer": "torch.optim.AdamW", "lr": spec["lr"], "betas": spec["betas"], "eps": spec["eps"],
            "weight_decay": spec["weight_decay"], "clip_grad_norm": spec["clip_grad_norm"],
            "trajectory": steps}


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False, default=jsonable)


def jsonable(x):
    if isinstance(x, (set, frozenset)):
        return str(x)  # as the existing references record PEFT's target sets
    if isinstance(x, torch.dtype):
        return str(x).replace("torch.", "")
    return str(x)


def tensor_file(path, tensors):
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, path)


def single_safetensors(folder):
    path = os.path.join(folder, "model.safetensors")
    if os.path.exists(path):
        return path
    raise RuntimeError("save_pretrained wrote no single model.safetensors in %s: %s" % (folder, sorted(os.listdir(folder))))


def grads_in_checkpoint_layout(model_f32, grads):
    """Writes the gradients through save_pretrained, so their names and layout are exactly those
    of model.safetensors, even where transformers stores a tensor differently in memory (e.g.
    stacked MoE experts) than in the checkpoint."""
    g = copy.deepcopy(model_f32)
    with torch.no_grad():
        for name, p in g.named_parameters():
            p.copy_(grads[name].to(p.dtype))
    tmp = tempfile.mkdtemp(prefix="gradsave")
    try:
        g.save_pretrained(tmp)
        return load_file(single_safetensors(tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def folder_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


# ---------------------------------------------------------------------------------------------
# One family
# ---------------------------------------------------------------------------------------------

def lora_targets(model, n_experts):
    """All linear layers but the output head and the router (LLaMA-Factory's lora_target all),
    by leaf name as PEFT matches them; plus stacked 3-D expert weights, which are parameters
    rather than nn.Linear modules and need PEFT's target_parameters."""
    names = set()
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear):
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "lm_head" or (n_experts and mod.out_features == n_experts):
                continue
            names.add(leaf)
    stacked = set()
    for name, p in model.named_parameters():
        if p.ndim == 3 and ".layers." in name:
            # model.layers.0.mlp.experts.gate_up_proj -> mlp.experts.gate_up_proj
            stacked.add(name.split(".layers.", 1)[1].split(".", 1)[1])
    return sorted(names), sorted(stacked)


def peft_case(base_f32, batch, moe, coef, n_experts, out_dir, device):
    """LoRA r 4, alpha 8 on every linear (and on stacked experts where PEFT can). If the run with
    stacked experts fails anywhere, it is redone without them; meta.json says which it is."""
    targets, stacked = lora_targets(base_f32, n_experts)
    attempts = []
    if stacked:
        attempts.append(stacked)
    attempts.append(None)
    errors = []
    for params in attempts:
        shutil.rmtree(out_dir, ignore_errors=True)
        os.makedirs(out_dir)
        try:
            lora_run(base_f32, batch, moe, coef, targets, params, errors, out_dir, device)
            return errors
        except Exception as e:
            traceback.print_exc()
            errors.append("target_modules=%s target_parameters=%s: %s: %s" % (targets, params, type(e).__name__, e))
    raise RuntimeError("every LoRA configuration failed: " + " | ".join(errors))


def lora_run(base_f32, batch, moe, coef, targets, stacked, errors, out_dir, device):
    import peft

    kw = dict(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM")
    if stacked:
        kw["target_parameters"] = stacked
    cfg = peft.LoraConfig(**kw)
    torch.manual_seed(4242)
    pm = peft.get_peft_model(copy.deepcopy(base_f32), cfg)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                # PEFT starts B at zero; non-zero makes the adapter change the forward pass.
                p.copy_(0.05 * torch.randn_like(p))
    pm.peft_config["default"].base_model_name_or_path = "../../../model"
    init_dir = os.path.join(out_dir, "adapter_init")
    pm.save_pretrained(init_dir)
    drop_model_card(init_dir)

    pm = pm.double().to(device)
    pm.eval()
    trainable = [(n, p) for n, p in pm.named_parameters() if p.requires_grad]
    params = [p for _, p in trainable]
    total, ce, aux, _ = losses(pm, batch, moe, coef)
    total.backward()
    missing = [n for n, p in trainable if p.grad is None]
    if missing:
        raise RuntimeError("trainable parameters without gradient: %s" % missing)
    tensor_file(os.path.join(out_dir, "grads.safetensors"), {n: p.grad for n, p in trainable})
    for p in params:
        p.grad = None
    steps = trajectory(pm, params, batch, moe, coef, LORA_TRAIN)
    after = os.path.join(out_dir, "adapter_after_5_steps")
    pm.save_pretrained(after)
    drop_model_card(after)

    meta = {
        "loss": float(total.float()),
        "trainable_names": [n for n, _ in trainable],
        "trainable_count": sum(p.numel() for p in params),
        "peft_config": pm.peft_config["default"].to_dict(),
        "lora_on_stacked_experts": bool(stacked),
        "lora_config_errors": list(errors),
        "b_init": "lora_B ~ N(0, 0.05^2) instead of PEFT's zeros",
        "train": dict(train_json(LORA_TRAIN, steps), schedule="constant"),
    }
    if moe:
        meta["ce_loss"] = float(ce.float())
        meta["aux_loss"] = float(aux.float())
    write_json(os.path.join(out_dir, "meta.json"), meta)


def drop_model_card(folder):
    # PEFT writes a README.md model card; the reference folders hold only the adapter.
    card = os.path.join(folder, "README.md")
    if os.path.exists(card):
        os.remove(card)


def make_family(name, outdir, tok_dir, tok, device, lean):
    builder, gemma_norms, moe, with_peft = FAMILIES[name]
    fam_dir = os.path.join(outdir, name)
    if os.path.exists(fam_dir):
        shutil.rmtree(fam_dir)
    model_dir = os.path.join(fam_dir, "model")
    ref_dir = os.path.join(fam_dir, "ref")
    os.makedirs(model_dir)
    os.makedirs(ref_dir)
    notes = []

    global PER_ROW
    PER_ROW = False
    cfg, model = build_family(builder, moe, notes)
    n_experts = num_experts(cfg)
    coef = float(getattr(cfg, "router_aux_loss_coef", 0.0) or 0.0)
    top_k = int(getattr(cfg, "num_experts_per_tok", 0) or 0)
    if moe and (n_experts < 2 or top_k < 1 or coef <= 0):
        raise RuntimeError("MoE config lost its settings: experts %d, top-k %d, aux coef %g" % (n_experts, top_k, coef))

    # The weights come from this seed alone (not from the probe runs above), so phi3 and
    # phi3_longrope share theirs.
    torch.manual_seed(SEEDS[name])
    init_weights(model, gemma_norms, n_experts)
    model.eval()
    impl = getattr(model.config, "_attn_implementation", None)
    if impl != "eager":
        raise RuntimeError("attention implementation is %r, not eager: softcapping/windows may be ignored" % impl)

    model.save_pretrained(model_dir)
    single_safetensors(model_dir)
    gen_cfg = os.path.join(model_dir, "generation_config.json")
    if not os.path.exists(gen_cfg):
        notes.append("save_pretrained wrote no generation_config.json; written by the script")
        write_json(gen_cfg, {"_from_model_config": True, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID,
                             "transformers_version": transformers.__version__})
    for f in TOKENIZER_FILES:
        shutil.copy(os.path.join(tok_dir, f), os.path.join(model_dir, f))

    batch, seq1_len, prompt_ids = make_batch(tok)
    T = int(batch["input_ids"].shape[1])
    if T <= SLIDING_WINDOW or (name == "phi3_longrope" and T <= LONGROPE_ORIGINAL_MAX):
        notes.append("batch length %d does not exceed the window/original length it should test" % T)
    batch = {k: v.to(device) for k, v in batch.items()}
    tensor_file(os.path.join(ref_dir, "batch.safetensors"), batch)

    m64 = copy.deepcopy(model).double().to(device)
    m64.eval()
    PER_ROW = bool(gemma_norms)

    # Forward and the gradients of every parameter.
    total, ce, aux, out = losses(m64, batch, moe, coef)
    total.backward()
    fwd = {"logits": out.logits.float(), "loss": total.float().reshape(1)}
    if moe:
        fwd["ce_loss"] = ce.float().reshape(1)
        fwd["aux_loss"] = aux.float().reshape(1)
    tensor_file(os.path.join(ref_dir, "forward.safetensors"), fwd)
    grads = {n: p.grad.detach().cpu() for n, p in m64.named_parameters() if p.grad is not None}
    missing = [n for n, p in m64.named_parameters() if p.grad is None]
    if missing:
        notes.append("parameters without gradient: %s" % missing)
        for n, p in m64.named_parameters():
            if p.grad is None:
                grads[n] = torch.zeros_like(p).cpu()
    try:
        grad_tensors = grads_in_checkpoint_layout(model, grads)
        grads_layout = "checkpoint (names and layout of model.safetensors)"
    except Exception as e:
        notes.append("gradients kept in module layout: %s" % e)
        grad_tensors = {n: g.float() for n, g in grads.items()}
        grads_layout = "module (named_parameters)"
    if not (lean and name == "phi3_longrope"):
        tensor_file(os.path.join(ref_dir, "grads_full.safetensors"), {k: v.float() for k, v in grad_tensors.items()})
    margin = None
    if moe:
        try:
            margin = router_margin(out, batch["attention_mask"], top_k)
        except Exception as e:
            notes.append("router margin not computed: %s" % e)
    m64.zero_grad(set_to_none=True)

    if not lean:
        with torch.no_grad():
            ids = batch["input_ids"][1:, :seq1_len]
            o1 = forward(m64, ids, torch.ones_like(ids), moe)
        tensor_file(os.path.join(ref_dir, "forward_seq1_unpadded.safetensors"), {"logits": o1.logits.float()})

    new_ids, margins = greedy(m64, prompt_ids, moe, device)

    ckpt_names = sorted(load_file(single_safetensors(model_dir)).keys())
    module_names = sorted(n for n, _ in model.named_parameters())
    meta = {
        "family": name,
        "loss": float(total.float()),
        "precision": "float64 compute from float32 weights",
        "tokenizer": "bytelevel_bpe (the qwen3 reference's)",
        "conversations": CONVERSATIONS,
        "label_rule": "only the last assistant turn (after the generation prompt) is trained",
        "loss_rule": "shifted cross-entropy, mean over labels != -100 across the batch"
                     + (" + router_aux_loss_coef * aux_loss" if moe else ""),
        "generate": {
            "prompt": GENERATE_PROMPT,
            "prompt_ids": prompt_ids,
            "new_ids": new_ids,
            "top1_top2_margins": margins,
            "rule": "greedy, 16 new tokens, eos ignored, whole sequence recomputed each step (no KV cache)",
        },
        "attn_implementation": "eager",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "grads_full_layout": grads_layout,
        "batch_T": int(batch["input_ids"].shape[1]),
        "batch_forward": ("one row at a time, each cut to its real tokens; padding logits NaN (not compared)"
                          if PER_ROW else "batched"),
        "seq1_len": seq1_len,
    }
    if ckpt_names != module_names:
        meta["checkpoint_names_differ_from_module_names"] = True
        meta["module_parameter_names"] = module_names
    if moe:
        meta.update(ce_loss=float(ce.float()), aux_loss=float(aux.float()), router_aux_loss_coef=coef,
                    num_experts=n_experts, num_experts_per_tok=top_k,
                    router_min_topk_gap=margin,
                    aux_rule="transformers' load_balancing_loss_func over all layers' router logits, "
                             "padding excluded by the attention mask")
    if name == "phi3_longrope":
        orig = LONGROPE_ORIGINAL_MAX
        mpe = int(model.config.max_position_embeddings)
        meta["longrope"] = {
            "original_max_position_embeddings": orig,
            "max_position_embeddings": mpe,
            "attention_factor": math.sqrt(1 + math.log(mpe / orig) / math.log(orig)),
            "rule": "long_factor when the sequence length (max position + 1) exceeds "
                    "original_max_position_embeddings, short_factor otherwise",
            "batch_uses": "long" if meta["batch_T"] > orig else "short",
            "seq1_unpadded_uses": "long" if seq1_len > orig else "short",
            "generate_prompt_len": len(prompt_ids),
        }
    if notes:
        meta["notes"] = notes
    write_json(os.path.join(ref_dir, "meta.json"), meta)

    # Full fine-tuning from the same float32 weights.
    ft = copy.deepcopy(model).double().to(device)
    ft.eval()
    steps = trajectory(ft, [p for p in ft.parameters() if p.requires_grad], batch, moe, coef, FULL_FT)
    write_json(os.path.join(ref_dir, "full_ft.json"), train_json(FULL_FT, steps))
    del ft

    errors = []
    if with_peft:
        lora_dir = os.path.join(ref_dir, "lora")
        try:
            lora_errors = peft_case(model, batch, moe, coef, n_experts, lora_dir, device)
            notes += ["lora: " + e for e in lora_errors]
        except Exception as e:
            traceback.print_exc()
            shutil.rmtree(lora_dir, ignore_errors=True)
            errors.append("lora: %s" % e)
    return fam_dir, notes, errors


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("--tokenizer-dir", default=os.path.join(HERE, "ref_tokenizer"),
                    help="folder with the qwen3 reference's tokenizer.json, tokenizer_config.json, chat_template.jinja")
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated subset of " + ",".join(FAMILIES))
    ap.add_argument("--device", default="cpu", help="torch device for the float64 computations (cpu is enough)")
    ap.add_argument("--lean", action="store_true",
                    help="smaller output: no forward_seq1_unpadded.safetensors, and phi3_longrope without "
                         "grads_full.safetensors (about 2.5 MiB less in all)")
    args = ap.parse_args()

    for f in TOKENIZER_FILES:
        if not os.path.exists(os.path.join(args.tokenizer_dir, f)):
            sys.exit("%s: missing %s (copy it from ../shared/testdata/reference/qwen3/model/)" % (args.tokenizer_dir, f))
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        sys.exit("unknown families %s; known: %s" % (unknown, ", ".join(FAMILIES)))

    os.makedirs(args.outdir, exist_ok=True)
    torch.set_grad_enabled(True)
    tok = load_tokenizer(args.tokenizer_dir)
    grand = 0
    failed = 0
    for name in families:
        t0 = time.time()
        report = {"family": name}
        try:
            fam_dir, notes, errors = make_family(name, args.outdir, args.tokenizer_dir, tok, args.device, args.lean)
            size = folder_bytes(fam_dir)
            grand += size
            report.update(status="partial" if errors else "ok", bytes=size, errors=errors, notes=notes)
        except Exception as e:
            traceback.print_exc()
            failed += 1
            report.update(status="error", error="%s: %s" % (type(e).__name__, e))
            # A half-written folder must not pass for a reference: keep it aside for debugging.
            half = os.path.join(args.outdir, name)
            if os.path.exists(half):
                aside = os.path.join(args.outdir, "_failed", name)
                shutil.rmtree(aside, ignore_errors=True)
                os.makedirs(os.path.dirname(aside), exist_ok=True)
                shutil.move(half, aside)
                report["moved_to"] = aside
        report["seconds"] = round(time.time() - t0, 1)
        print(json.dumps(report, default=str), flush=True)
    print(json.dumps({"total_bytes": grand, "total_mib": round(grand / 2**20, 2), "failed": failed}), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
