// Loading a Hugging Face Llama-family checkpoint (config.json + safetensors weights) into the
// runtime's host weights.
//
// Supported: model_type "llama", and "mistral" when no sliding window is set (sliding_window
// absent or null: then a Mistral model computes exactly what a Llama model does). Weights in
// F32, F16 or BF16 (converted to fp32), from model.safetensors or from shards listed in
// model.safetensors.index.json (model.safetensors wins when both exist, as in transformers).
// Both config styles are read: transformers 4 (rope_theta, rope_scaling) and transformers 5
// (rope_parameters {rope_type, rope_theta}).
//
// Rejected with an InputError naming config.json and the key: rope scaling (rope_scaling
// non-null or rope_parameters.rope_type other than "default"), attention_bias or mlp_bias true,
// hidden_act other than "silu", pretraining_tp > 1, quantization_config, head_dim other than
// hidden_size / num_attention_heads, a sliding window. Missing or mis-shaped tensors name the
// file and the tensor (expected vs found shape); bias tensors of the projections are rejected;
// other extra tensors (rotary inv_freq, ...) are ignored.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "core/model/shape.hpp"
#include "core/model/weights.hpp"

namespace lorasched {

// Reads and validates a config.json. Defaults as in transformers' LlamaConfig:
// num_key_value_heads = num_attention_heads, rms_norm_eps 1e-6, rope_theta 10000,
// tie_word_embeddings false, max_position_embeddings 2048. ModelShape::name is the name of the
// folder holding the file.
ModelShape read_hf_config(const std::filesystem::path& config_json);

// Loads `dir`/config.json and the weights beside it.
ModelWeights load_hf_model(const std::filesystem::path& dir);

// The end-of-sequence ids HF's generate() stops at by default for the model in `dir`, as
// transformers chooses them: eos_token_id of generation_config.json when the folder has that
// file (absent or null there: none), else of config.json. An int or a list of ints; empty when
// unset. InputError naming the file and key for anything else.
std::vector<int32_t> read_eos_token_ids(const std::filesystem::path& dir);

// The HF tensor name of a decoder projection, e.g. "model.layers.3.self_attn.q_proj" (without
// ".weight"); the module names PEFT matches target_modules against.
std::string hf_module_name(int layer, Target t);

}  // namespace lorasched
