#!/usr/bin/env python3
"""Builds tests/fixtures/hf-tiny: a tiny random Llama model saved by Hugging Face transformers,
PEFT LoRA adapters for it, and the greedy outputs / logits HF computes with them.

The build and the tests never run this; they read what it wrote. Regenerate with:

    python3 -m venv /tmp/fx
    /tmp/fx/bin/pip install torch transformers peft safetensors numpy
    /tmp/fx/bin/python scripts/make-fixtures.py

(the CPU-only torch from download.pytorch.org/whl/cpu works as well). The output is
deterministic for given library versions; tests/fixtures/README.md documents the format.
"""

import argparse
import copy
import json
import math
import os
import shutil
import sys

import numpy as np
import peft
import safetensors
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.numpy import save_file
from transformers import LlamaConfig, LlamaForCausalLM

SEED = 1234
MAX_NEW_TOKENS = 8
# Seeds are searched upward from SEED until every greedy step's top-1/top-2 logit gap is at least
# this (about 1e-3 of the logits' spread), so an fp32 reimplementation reproduces the tokens.
MIN_MARGIN = 2e-3
PROMPTS = [
    [1, 17, 42, 99, 3],
    [1, 200, 201, 202, 203, 5, 77, 12, 130, 64, 9],
    [1, 7],
]
ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# name -> (LoraConfig kwargs, dtype the adapter is saved in)
ADAPTERS = {
    # plain LoRA on all seven projections
    "r8-all": (dict(r=8, lora_alpha=16, target_modules=ALL7), torch.float32),
    # target_modules as a regex string (re.fullmatch against the module name)
    "r4-qv-regex": (dict(r=4, lora_alpha=8, target_modules=r".*\.(q_proj|v_proj)"), torch.float32),
    # rsLoRA (scale alpha/sqrt(r)), saved as F16
    "r16-rslora-f16": (
        dict(r=16, lora_alpha=8, use_rslora=True,
             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]),
        torch.float16,
    ),
    # per-module ranks and alphas
    "r8-patterns": (
        dict(r=8, lora_alpha=16, target_modules=ALL7,
             rank_pattern={"q_proj": 4, "model.layers.1.mlp.down_proj": 16},
             alpha_pattern={"v_proj": 32, r"layers\.0\.self_attn\.o_proj": 4}),
        torch.float32,
    ),
    # layers_to_transform, saved as BF16
    "r4-layer1-bf16": (
        dict(r=4, lora_alpha=4, target_modules=["k_proj", "o_proj", "gate_proj", "up_proj"],
             layers_to_transform=[1]),
        torch.bfloat16,
    ),
    # Python-only regex syntax: \Z in target_modules, exclude_modules and pattern keys (a
    # std::regex reading took \Z for a literal Z), a named group
    "r4-python-regex": (
        dict(r=4, lora_alpha=8, target_modules=r".*\.(?P<proj>q_proj|v_proj|down_proj)\Z",
             exclude_modules=r".*\.1\.self_attn\.v_proj\Z",
             rank_pattern={r"v_proj\Z": 2}, alpha_pattern={r"down_proj\Z": 20}),
        torch.float32,
    ),
}
DTYPE_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def make_base(seed):
    cfg = LlamaConfig(
        hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=256, max_position_embeddings=128, rms_norm_eps=1e-5,
        rope_theta=10000.0, tie_word_embeddings=False, initializer_range=0.1,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
        attn_implementation="eager",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).to(torch.float32).eval()
    # Non-trivial norm weights, so a loader that mixes them up fails the checks.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    return model


def run(model, prompts, logits, key):
    """Greedy generation per prompt; returns {generated, min_margin, logits} and fills `logits`."""
    out = {"generated": [], "min_margin": [], "logits": []}
    for i, p in enumerate(prompts):
        ids = torch.tensor([p])
        with torch.no_grad():
            g = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                               max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                               output_logits=True, return_dict_in_generate=True,
                               pad_token_id=0, eos_token_id=None)
        new = g.sequences[0, len(p):].tolist()
        assert len(new) == MAX_NEW_TOKENS, new
        steps = torch.stack([s[0] for s in g.logits]).float().numpy()  # [steps, vocab]
        assert (steps.argmax(-1) == np.array(new)).all()
        top2 = np.sort(steps, axis=-1)[:, -2:]
        name = f"{key}.p{i}"
        logits[name] = np.ascontiguousarray(steps, dtype=np.float32)
        out["generated"].append(new)
        out["min_margin"].append(float((top2[:, 1] - top2[:, 0]).min()))
        out["logits"].append(name)
    return out


def prefill(model, prompts, logits, key):
    names = []
    for i, p in enumerate(prompts):
        with torch.no_grad():
            lg = model(input_ids=torch.tensor([p])).logits[0].float().numpy()
        name = f"{key}.prefill.p{i}"
        logits[name] = np.ascontiguousarray(lg, dtype=np.float32)
        names.append(name)
    return names


def eos_fixtures(out, base_generated, logits):
    """Model folders that differ from model/ only in their end-of-sequence ids (the weights are
    a link to model/'s), and what HF's default generate() does with them: it stops a sequence
    at the first token in eos_token_id, taken from generation_config.json when the folder has
    one, else from config.json. The ids are tokens the base model produces, so some prompts
    stop early and some do not."""
    g = base_generated
    with open(os.path.join(out, "model", "config.json")) as f:
        config = json.load(f)
    folders = {
        # A list in generation_config.json; config.json's id (which would stop prompt 2 at
        # once) is overridden by it, as in transformers.
        "model-eos": ({**config, "eos_token_id": g[2][0]}, {"eos_token_id": [g[0][2], g[1][3]]}),
        # No generation_config.json: an int in config.json.
        "model-eos-config": ({**config, "eos_token_id": g[0][1]}, None),
    }
    result = {}
    for name, (cfg, gen_cfg) in folders.items():
        d = os.path.join(out, name)
        os.makedirs(d)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")
        if gen_cfg is not None:
            with open(os.path.join(d, "generation_config.json"), "w") as f:
                json.dump(gen_cfg, f, indent=2, sort_keys=True)
                f.write("\n")
        os.symlink(os.path.join("..", "model", "model.safetensors"),
                   os.path.join(d, "model.safetensors"))
        model = LlamaForCausalLM.from_pretrained(d).eval()
        eos = model.generation_config.eos_token_id
        entry = {"dir": name, "eos_token_id": eos,
                 "source": "generation_config.json" if gen_cfg is not None else "config.json",
                 "generated": [], "logits": []}
        for i, p in enumerate(PROMPTS):
            ids = torch.tensor([p])
            with torch.no_grad():  # HF's defaults: no eos_token_id or pad_token_id passed
                r = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                   max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                   output_logits=True, return_dict_in_generate=True)
            new = r.sequences[0, len(p):].tolist()
            assert new == g[i][:len(new)], (name, i, new)
            key = f"eos.{name}.p{i}"
            logits[key] = np.ascontiguousarray(
                torch.stack([s[0] for s in r.logits]).float().numpy(), dtype=np.float32)
            entry["generated"].append(new)
            entry["logits"].append(key)
        lengths = [len(x) for x in entry["generated"]]
        assert min(lengths) < MAX_NEW_TOKENS and max(lengths) == MAX_NEW_TOKENS, (name, lengths)
        result[name] = entry
        print(f"{name}: eos {eos} -> {entry['generated']}")
    return result


def tensor_summary(t):
    a = t.detach().to(torch.float64).numpy()
    return {"shape": list(a.shape), "sum": float(a.sum()), "abs_sum": float(np.abs(a).sum()),
            "first": float(a.flat[0]), "last": float(a.flat[-1])}


def main():
    # PEFT stores target_modules from a set: fix the string hash seed so the order is stable.
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(root, "tests", "fixtures", "hf-tiny"))
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    out = args.out
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)

    for base_seed in range(SEED, SEED + 100):
        base = make_base(base_seed)
        probe = run(base, PROMPTS, {}, "probe")
        if min(probe["min_margin"]) >= MIN_MARGIN:
            break
    else:
        raise SystemExit("no base seed with large enough logit margins")
    base.save_pretrained(os.path.join(out, "model"))
    base.save_pretrained(os.path.join(out, "model-sharded"), max_shard_size="200KB")
    for d in ("model", "model-sharded"):
        gc = os.path.join(out, d, "generation_config.json")
        if os.path.exists(gc):
            os.remove(gc)
    # The saved model must reload to the same weights.
    reloaded = LlamaForCausalLM.from_pretrained(os.path.join(out, "model-sharded")).eval()
    for (n1, p1), (n2, p2) in zip(base.state_dict().items(), reloaded.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1

    logits = {}
    expected = {
        "format": 1,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__, "safetensors": safetensors.__version__,
                     "numpy": np.__version__, "python": sys.version.split()[0]},
        "seed": base_seed,
        "max_new_tokens": MAX_NEW_TOKENS,
        "prompts": PROMPTS,
        "logits_file": "logits.safetensors",
        "model": {
            "dir": "model",
            "sharded_dir": "model-sharded",
            "tensors": {n: tensor_summary(p) for n, p in base.state_dict().items()},
        },
    }
    expected["base"] = run(base, PROMPTS, logits, "base.generate")
    expected["base"]["prefill_logits"] = prefill(base, PROMPTS, logits, "base")

    expected["adapters"] = {}
    for name, (kwargs, dtype) in ADAPTERS.items():
        for seed in range(SEED + 1000 * (len(expected["adapters"]) + 1), SEED + 100000):
            torch.manual_seed(seed)
            model = get_peft_model(copy.deepcopy(base),
                                   LoraConfig(init_lora_weights=False, lora_dropout=0.0, **kwargs))
            model.eval()
            lora_params = [p for n, p in model.named_parameters() if ".lora_" in n]
            with torch.no_grad():
                for p in lora_params:  # round to the saved dtype, compute in fp32
                    p.copy_(p.to(dtype).to(torch.float32))
            margins = run(model, PROMPTS, {}, "probe")["min_margin"]
            merged_margins = run(copy.deepcopy(model).merge_and_unload().eval(), PROMPTS, {},
                                 "probe")["min_margin"]
            if min(margins + merged_margins) >= MIN_MARGIN:
                break
        d = os.path.join(out, "adapters", name)
        for p in lora_params:
            p.data = p.data.to(dtype)
        model.save_pretrained(d)
        for p in lora_params:
            p.data = p.data.to(torch.float32)
        readme = os.path.join(d, "README.md")
        if os.path.exists(readme):
            os.remove(readme)

        modules = {}
        for mname, mod in model.base_model.model.named_modules():
            if isinstance(mod, peft.tuners.lora.LoraLayer) and "default" in mod.lora_A:
                modules[mname] = {
                    "rank": int(mod.r["default"]),
                    "scale": float(mod.scaling["default"]),
                    "A": tensor_summary(mod.lora_A["default"].weight),
                    "B": tensor_summary(mod.lora_B["default"].weight),
                }
        entry = {"dir": f"adapters/{name}", "seed": seed, "dtype": DTYPE_NAMES[dtype],
                 "r": kwargs["r"],
                 "lora_alpha": kwargs["lora_alpha"], "use_rslora": kwargs.get("use_rslora", False),
                 "modules": modules}
        entry["unmerged"] = run(model, PROMPTS, logits, f"{name}.unmerged")
        entry["prefill_logits"] = prefill(model, PROMPTS, logits, name)

        # The saved adapter, loaded back by PEFT, must behave as the one in memory.
        again = PeftModel.from_pretrained(copy.deepcopy(base), d).eval()
        again_out = run(again, PROMPTS, {}, "check")
        assert again_out["generated"] == entry["unmerged"]["generated"], name

        merged = copy.deepcopy(model).merge_and_unload().eval()
        entry["merged"] = run(merged, PROMPTS, logits, f"{name}.merged")
        expected["adapters"][name] = entry
        print(f"{name}: unmerged {entry['unmerged']['generated']} merged "
              f"{entry['merged']['generated']} margins {entry['unmerged']['min_margin']}")

    expected["eos"] = eos_fixtures(out, expected["base"]["generated"], logits)

    print("base:", expected["base"]["generated"], "margins", expected["base"]["min_margin"])
    save_file(logits, os.path.join(out, "logits.safetensors"),
              metadata={"made_by": "scripts/make-fixtures.py"})
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")

    total = 0
    for dirpath, _, files in os.walk(out):
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)
            total += os.path.getsize(os.path.join(dirpath, f))
    print(f"wrote {out}: {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
