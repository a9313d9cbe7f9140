#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (tests/fuzz/corpus/<target>/): small valid
files of every format and invalid ones near the boundaries the parsers check. A seed's name
says what the parser must do with it, and the corpus replay (replay_main.cpp) checks it:
"valid-*" must be accepted, "invalid-*" must be refused with a one-line error. Run it from
anywhere; it rewrites the seed files it owns (those two prefixes) and leaves the regression
inputs ("regress-*", checked for crashes only) alone. Keep the corpus under 1 MB."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


OWNED = ("valid-", "invalid-", "seed-")  # "seed-": the names before valid/invalid


def put(target, name, data, valid):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, ("valid-" if valid else "invalid-") + name), "wb") as f:
        f.write(data)


def clean(target):
    d = os.path.join(CORPUS, target)
    if os.path.isdir(d):
        for f in os.listdir(d):
            if f.startswith(OWNED):
                os.remove(os.path.join(d, f))


# ---- experiment TOML ---------------------------------------------------------------------------
BASE = """[run]
name = "fz"
seed = 3
output = "results/fz.h5"
[model]
preset = "tiny"
[adapters]
count = 4
ranks = [8, 16]
[workload]
arrival = "poisson"
rate = 10.0
num_requests = 20
prompt = { kind = "uniform", min = 4, max = 32 }
output = 8
[engine]
max_batch_size = 8
kv_blocks = 256
[cluster]
executor = "costmodel"
costmodel = "dlora-artifact"
"""
EXPERIMENTS = {
    "base.toml": BASE,
    "quickstart.toml": open(os.path.join(HERE, "../../experiments/quickstart.toml")).read(),
    "sweep.toml": BASE + """[sweep]
"scheduler.plugin" = ["unmerged-fcfs", "merged-only", "dlora"]
"workload.rate" = [2.0, 4.0]
"run.seed" = [1, 2]
""",
    "variants.toml": BASE + """[report]
group_by = ["variant"]
[[sweep.variants]]
name = "a"
scheduler = { plugin = "dlora" }
threshold = { plugin = "fixed", alpha = 1.0, beta = 0.56 }
[[sweep.variants]]
name = "b"
scheduler = { plugin = "dlora" }
threshold = { plugin = "dlora-adaptive" }
engine = { preemption = "swap", unified_pool = false }
""",
    "gamma-zipf.toml": BASE.replace('arrival = "poisson"', 'arrival = "gamma"\ncv = 2.5\npopularity = { kind = "zipf", s = 1.1 }'),
    "drifting.toml": BASE.replace('arrival = "poisson"', 'arrival = "poisson"\nduration_s = 30.0\npopularity = { kind = "drifting", hot_count = 2, hot_share = 0.9, drift_period_s = 5.0 }'),
    "lognormal.toml": BASE.replace('output = 8', 'output = { kind = "lognormal", median = 20.0, sigma = 0.5, min = 1, max = 100 }'),
    "artifact.toml": BASE.replace('arrival = "poisson"', 'arrival = "artifact"\ncv = 1.0') +
    "[workload.artifact]\nnum_functions = 64\nfunction_popularity = \"zipf\"\nmap_stride = 4\nnum_bins = 4\ninterval_minutes = 2\n",
    "trace.toml": BASE.replace('arrival = "poisson"\nrate = 10.0\nnum_requests = 20\nprompt = { kind = "uniform", min = 4, max = 32 }\noutput = 8',
                              'arrival = "trace"\ntrace = "tests/fixtures/traces/azure_code_300.csv"\ntarget_rate = 5.0\ntrace_start_s = 1.0\nmax_prompt_tokens = 512'),
    "trace-lengths.toml": BASE.replace('prompt = { kind = "uniform", min = 4, max = 32 }\noutput = 8',
                                      'prompt = { kind = "trace", trace = "${LORASCHED_FUZZ_TRACES:-tests/fixtures/traces}/azure_conv_300.csv" }\noutput = { kind = "trace", trace = "tests/fixtures/traces/azure_conv_300.csv" }'),
    "cluster.toml": BASE.replace('executor = "costmodel"', 'replicas = 3\nmigration_interval_s = 2.0\nmigration_kv = "transfer"\nexecutor = "costmodel"').replace('costmodel = "dlora-artifact"', 'costmodel = "llama2-7b@a100-80gb"\n[migration]\nplugin = "dlora-ilp"\n[dispatcher]\nplugin = "adapter-affinity"').replace('preset = "tiny"', 'preset = "llama2-7b"'),
    "overrides.toml": "#set workload.rate=8\n#set engine.preemption=swap\n" + BASE,
    "override-bad.toml": "#set =3\n#set a..b=1\n#set workload.rate.x=2\n" + BASE,
    "plugin-params.toml": BASE + '[scheduler]\nplugin = "dlora"\n[threshold]\nplugin = "fixed"\nalpha = nan\nbeta = inf\n',
    "nan-rate.toml": BASE.replace("rate = 10.0", "rate = nan"),
    "inf-watermark.toml": BASE + "",
    "neg-rate.toml": BASE.replace("rate = 10.0", "rate = -1.0"),
    "zero-rate.toml": BASE.replace("rate = 10.0", "rate = 0"),
    "huge-ints.toml": BASE.replace("count = 4", "count = 9223372036854775807").replace("kv_blocks = 256", "kv_blocks = -9223372036854775808"),
    "types.toml": BASE.replace('preset = "tiny"', 'preset = 1979-05-27T07:32:00Z').replace("ranks = [8, 16]", 'ranks = [8, "16", [1]]'),
    "unknown-key.toml": BASE + "[engine2]\nx = 1\n",
    "syntax.toml": "[run\nname = \"x\"\n",
    "duplicate.toml": "[run]\nname = \"a\"\nname = \"b\"\n",
    "unicode.toml": '[run]\nname = "\u00e9\u4e2d\U0001f600"\n[workload]\nnum_requests = 1\n',
    "env.toml": BASE.replace('output = "results/fz.h5"', 'output = "${LORASCHED_FUZZ_UNSET_VAR}/x.h5"'),
    "empty.toml": "",
    "sweep-bad.toml": BASE + '[sweep]\n"workload.rate" = []\n"a.b" = 3\nvariants = [1]\n',
    "peft.toml": BASE.replace('preset = "tiny"', 'path = "tests/fixtures/hf-tiny/model"').replace(
        "count = 4\nranks = [8, 16]",
        'source = "peft"\npaths = ["tests/fixtures/hf-tiny/adapters/r8-all", '
        '"tests/fixtures/hf-tiny/adapters/r4-python-regex"]'),
    "model-path.toml": BASE.replace('preset = "tiny"', 'path = "tests/fixtures/hf-tiny/model"'),
}
EXPERIMENTS["inf-watermark.toml"] = BASE.replace("kv_blocks = 256", "kv_blocks = 256\nwatermark = inf\ngpu_memory_utilization = -inf")

# ---- traces ------------------------------------------------------------------------------------
AZURE = open(os.path.join(HERE, "../fixtures/traces/azure_code_300.csv")).read().splitlines()
azure_small = "\n".join(AZURE[:12]) + "\n"
TRACES = {  # first byte: format and options (fuzz_trace.cpp)
    "azure": b"\x00" + azure_small.encode(),
    "azure-window": b"\xfc" + azure_small.encode(),
    "azure-scale": b"\x24" + azure_small.encode(),
    "azure-crlf": b"\x00" + azure_small.replace("\n", "\r\n").encode(),
    "azure-unsorted": b"\x00" + (AZURE[0] + "\n" + AZURE[5] + "\n" + AZURE[2] + "\n").encode(),
    "azure-header-only": b"\x00" + (AZURE[0] + "\n").encode(),
    "azure-empty": b"\x00",
    "azure-bad-date": b"\x00TIMESTAMP,ContextTokens,GeneratedTokens\n2023-02-30 10:00:00,1,1\n2023-11-16 25:00:00.1,1,1\n",
    "azure-midnight": b"\x10TIMESTAMP,ContextTokens,GeneratedTokens\n2023-12-31 23:59:59.9999999,5,0\n2024-01-01T00:00:00,0,3\n",
    "azure-bigcount": b"\x00TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,99999999999,-1\n",
    "lengths": b"\x02" + azure_small.encode(),
    "adapter": b"\x01arrival_s,adapter,prompt_tokens,output_tokens\n0,0,10,5\n0.5,1,20,3\n0.5,3,1,1\n2.25,2,100,40\n",
    "adapter-window": b"\xfd\xef\xbb\xbfarrival_s,adapter,prompt_tokens,output_tokens\n0.1,0,10,5\n0.6,1,20,3\n1.5,3,1,1\n4.25,2,100,40\n",
    "adapter-unsorted": b"\x01arrival_s,adapter,prompt_tokens,output_tokens\n1.0,0,10,5\n0.5,1,20,3\n",
    "adapter-bad": b"\x01arrival_s,adapter,prompt_tokens,output_tokens\nnan,0,1,1\ninf,1,1,1\n1e400,0,1,1\n-0,4,0,1\n",
    "counts": b"\x03function,bin0,bin1,bin2\nf1,10,0,3\nf2,1.5,2,0\nf3,0,0,100\n",
    "counts-window": b"\x33function,bin0,bin1,bin2,bin3\nf1,10,0,3,1\nf2,1.5,2,0,0\n",
    "counts-reseed": b"\x1ffunction,bin0,bin1,bin2\nf1,10,0,3\nf2,1.5,2,0\nf3,0,0,100\n",
    "counts-zero": b"\x03function,bin0\nf1,0\n",
    "counts-bad": b"\x03function,bin0,bin2\n,1,2\nf,nan,1e999\n",
}

# ---- safetensors -------------------------------------------------------------------------------


def st(header, data=b""):
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def f32(*vals):
    return struct.pack("<%df" % len(vals), *vals)


SAFETENSORS = {
    "basic": st({"__metadata__": {"format": "pt"}, "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                 "b": {"dtype": "F16", "shape": [3], "data_offsets": [16, 22]},
                 "c": {"dtype": "BF16", "shape": [1], "data_offsets": [22, 24]},
                 "d": {"dtype": "I64", "shape": [1], "data_offsets": [24, 32]}},
                f32(1, 2, 3, 4) + struct.pack("<3H", 0x3c00, 0x7c00, 0x7e00) + struct.pack("<H", 0x3f80) + struct.pack("<q", 7)),
    "nan-inf": st({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}}, f32(float("nan"), float("inf"), -float("inf"))),
    "empty-tensor": st({"z": {"dtype": "F32", "shape": [0, 5], "data_offsets": [0, 0]}, "s": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}}, f32(1)),
    "f4": st({"q": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}, b"\x00\x00"),
    "overlap": st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, f32(1, 2, 3)),
    "beyond": st({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, f32(1)),
    "overflow": st({"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}}),
    "negative": st({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, f32(1)),
    "dup": b"\x20\x00\x00\x00\x00\x00\x00\x00" + b'{"a":{},"a":{}}' + b" " * 17,
    "deep": st({"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}),
    "short": b"\x05\x00\x00",
    "huge-len": b"\xff\xff\xff\xff\xff\xff\xff\xff{}",
    "not-object": st([1, 2]),
    "bad-dtype": st({"a": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, b"\x00" * 16),
    "float-offsets": st({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0.0, 4.5]}}, f32(1)),
    "metadata-bad": st({"__metadata__": {"a": 1}}),
}

# ---- config.json / adapter_config.json -------------------------------------------------------
CONFIG = {"model_type": "llama", "hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 2,
          "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 16,
          "max_position_embeddings": 64, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
          "tie_word_embeddings": False, "hidden_act": "silu"}


def variant(base, **kw):
    """`base` with the keys in kw set (None: removed), as indented JSON."""
    c = dict(base)
    for k, v in kw.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return json.dumps(c, indent=1)


def cfg(**kw):
    return variant(CONFIG, **kw)


HF_CONFIGS = {
    "basic.json": cfg(),
    "transformers5.json": cfg(rope_theta=None, rope_parameters={"rope_type": "default", "rope_theta": 500000.0}, head_dim=4),
    "mistral.json": cfg(model_type="mistral", sliding_window=None),
    "mistral-sw.json": cfg(model_type="mistral", sliding_window=4096),
    "tied.json": cfg(tie_word_embeddings=True),
    "rope-scaling.json": cfg(rope_scaling={"type": "linear", "factor": 2.0}),
    "huge-layers.json": cfg(num_hidden_layers=2147483647),
    "huge-theta.json": cfg(rope_theta=1e300, rms_norm_eps=1e-300),
    "neg-eps.json": cfg(rms_norm_eps=-1),
    "heads.json": cfg(num_attention_heads=3, num_key_value_heads=2),
    "types.json": cfg(hidden_size="8", vocab_size=16.0, tie_word_embeddings=1),
    "quantized.json": cfg(quantization_config={"bits": 4}),
    "gpt2.json": cfg(model_type="gpt2"),
    "not-object.json": "[1, 2, 3]",
    "dup.json": '{"model_type": "llama", "model_type": "llama"}',
    "truncated.json": cfg()[:40],
    "deep.json": "[" * 100 + "]" * 100,
}
ADAPTER = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "use_rslora": False, "bias": "none",
           "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}


def acfg(**kw):
    return variant(ADAPTER, **kw)


ADAPTER_CONFIGS = {
    "basic.json": acfg(),
    "all-linear.json": acfg(target_modules="all-linear", use_rslora=True),
    "regex.json": acfg(target_modules=r".*\.(q|k|v|o|gate|up|down)_proj"),
    "regex-python.json": acfg(target_modules=r".*\.(?P<proj>q|k|v|o|gate|up|down)_proj\Z"),
    "regex-bad.json": acfg(target_modules=r".*\p{L}_proj"),
    "regex-redos.json": acfg(target_modules="(a*)*b|" + "(" * 30 + "q_proj" + ")" * 30),
    "regex-steps.json": acfg(target_modules=r"(.|.)*\d"),
    "patterns.json": acfg(rank_pattern={"q_proj": 2, "layers\\.1\\..*": 2}, alpha_pattern={r"v_proj\Z": 16}),
    "pattern-alpha-huge.json": acfg(alpha_pattern={"v_proj": 1e300}),
    "layers.json": acfg(layers_to_transform=[0, 1], layers_pattern="layers"),
    "layers-bad.json": acfg(layers_to_transform=[5], exclude_modules=["k_proj"]),
    "subset.json": acfg(target_modules=["q_proj", "v_proj"]),
    "rank-mismatch.json": acfg(r=4),
    "huge-alpha.json": acfg(lora_alpha=1e308),
    "neg-alpha.json": acfg(lora_alpha=-16),
    "dora.json": acfg(use_dora=True),
    "embed.json": acfg(target_modules=["embed_tokens", "q_proj"]),
    "no-targets.json": acfg(target_modules=[]),
    "ia3.json": acfg(peft_type="IA3"),
    "pissa.json": acfg(init_lora_weights="pissa_niter_4"),
    "types.json": acfg(r="2", target_modules=[1, 2]),
    "not-object.json": '"LORA"',
}

# ---- cost profiles -----------------------------------------------------------------------------
TINY = {"name": "tiny", "vocab_size": 2048, "hidden_size": 256, "intermediate_size": 688,
        "num_layers": 4, "num_heads": 8, "num_kv_heads": 4, "head_dim": 32,
        "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": False,
        "max_position": 4096}


def m(s):
    return {"seconds": s, "samples": [s, s]}


def profile(**kw):
    p = {
        "format": "lorasched-profile", "version": 1,
        "machine": {"hostname": "h", "cpu_model": "c", "threads": 1, "executor": "cpu", "device": "d"},
        "date": "2024-01-01T00:00:00Z", "model": dict(TINY), "element_bytes": 4, "block_size": 16,
        "block_bytes": 65536, "device_memory_bytes": 300000000.0, "default_pool_bytes": 268435456.0,
        "seconds_taken": 1.0,
        "grid": {"prefill_tokens": [1, 16], "prefill_seqs": [1, 2], "decode_batch": [1, 4],
                 "decode_context": [16, 64], "ranks": [8], "swap_blocks": [1], "max_kv_tokens": 8192,
                 "adapter_rotation": 2, "repeats": 2, "warmup": 1},
        "prefill": [dict(tokens=1, seqs=1, **m(0.001)), dict(tokens=16, seqs=1, **m(0.004)), dict(tokens=16, seqs=2, **m(0.005))],
        "decode": [dict(batch=1, context=16, **m(0.001)), dict(batch=4, context=64, **m(0.003))],
        "lora": [dict(tokens=16, adapters=1, rank=8, **m(0.005)), dict(tokens=16, adapters=2, rank=8, **m(0.007))],
        "mixed": [dict(prefill_tokens=16, prefill_seqs=1, decode_batch=4, decode_context=64, **m(0.006))],
        "merge": [dict(rank=8, bytes=100000, **m(0.002))],
        "unmerge": [dict(rank=8, bytes=100000, **m(0.002))],
        "load": [dict(rank=8, bytes=100000, **m(0.0005)), dict(rank=16, bytes=200000, **m(0.001))],
        "swap_out": [dict(blocks=1, bytes=65536, **m(0.0001))],
        "swap_in": [dict(blocks=1, bytes=65536, **m(0.0001))],
    }
    for k, v in kw.items():
        p[k] = v
    return json.dumps(p, indent=1)


PROFILES = {
    "basic.json": profile(),
    "huge-seconds.json": profile(load=[dict(rank=8, bytes=1, **m(0.0)), dict(rank=16, bytes=2, **m(1e308))]),
    "huge-memory.json": profile(device_memory_bytes=1e308, default_pool_bytes=1e308),
    "overflow-number.json": profile().replace('"seconds_taken": 1.0', '"seconds_taken": 1e999'),
    "nan-literal.json": profile().replace('"seconds_taken": 1.0', '"seconds_taken": NaN'),
    "negative.json": profile(merge=[dict(rank=8, bytes=100000, **m(-0.002))]),
    "dup-point.json": profile(decode=[dict(batch=1, context=16, **m(0.001)), dict(batch=1, context=16, **m(0.002))]),
    "no-lora.json": profile(lora=[]),
    "lora-no-base.json": profile(lora=[dict(tokens=7, adapters=3, rank=8, **m(0.005))]),
    "other-model.json": profile(model=dict(TINY, hidden_size=512)),
    "version.json": profile(version=2),
    "wrong-format.json": '{"format": "something-else"}',
    "types.json": profile(block_bytes="64k", grid=[]),
}


# The seeds each parser must accept; every other seed must be refused.
VALID = {
    "experiment": {"artifact.toml", "base.toml", "cluster.toml", "drifting.toml",
                   "gamma-zipf.toml", "lognormal.toml", "model-path.toml", "overrides.toml",
                   "peft.toml", "plugin-params.toml", "quickstart.toml", "sweep.toml",
                   "trace-lengths.toml", "trace.toml", "unicode.toml", "variants.toml"},
    "trace": {"adapter", "adapter-window", "azure", "azure-crlf", "azure-midnight",
              "azure-scale", "azure-window", "counts", "counts-reseed", "counts-window",
              "lengths"},
    "safetensors": {"basic", "empty-tensor", "nan-inf"},
    "hf_config": {"basic.json", "mistral.json", "tied.json", "transformers5.json"},
    "adapter_config": {"all-linear.json", "layers.json", "neg-alpha.json", "patterns.json",
                       "regex.json", "regex-python.json", "basic.json"},
    "cost_profile": {"basic.json", "huge-memory.json"},
}


def main():
    for t, files in [("experiment", EXPERIMENTS), ("trace", TRACES), ("safetensors", SAFETENSORS),
                     ("hf_config", HF_CONFIGS), ("adapter_config", ADAPTER_CONFIGS),
                     ("cost_profile", PROFILES)]:
        assert VALID[t] <= set(files), VALID[t] - set(files)
        clean(t)
        for name, data in files.items():
            put(t, name, data, name in VALID[t])
    total = 0
    for root, _, files in os.walk(CORPUS):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print(f"corpus: {total} bytes")
    assert total < 1_000_000, "keep the seed corpus under 1 MB"


if __name__ == "__main__":
    main()
