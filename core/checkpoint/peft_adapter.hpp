// Loading a PEFT LoRA adapter (the output of PeftModel.save_pretrained: adapter_config.json and
// adapter_model.safetensors) for a Llama-family base model.
//
// adapter_config.json, as PEFT reads it:
//  - peft_type "LORA"; r; lora_alpha; use_rslora (scale lora_alpha/sqrt(r), else lora_alpha/r).
//  - target_modules: a list (a module is targeted when its full name equals an entry or ends in
//    "." + entry; "all-linear" as a string, in any case, means all seven projections), or a
//    Python regex matched against the full module name ("model.layers.3.self_attn.q_proj") with
//    re.fullmatch. Python regexes are run by PCRE2 after translating the syntax the two spell
//    differently (core/checkpoint/python_regex.hpp: \Z, \v, {,n}, ...), with a step limit: a
//    pattern that backtracks catastrophically is an InputError naming the file, key and
//    pattern, not a hang; syntax PCRE2 cannot honour (\N{...}, (?a)) is refused by name.
//  - exclude_modules (list or regex, as in PEFT), layers_to_transform (int or list; list
//    target_modules only, as in PEFT), layers_pattern (absent, or naming "layers").
//  - rank_pattern / alpha_pattern: the first key (in file order) for which
//    re.match(rf"(.*\.)?({key})$", module_name) matches gives the module's rank / alpha. Keys
//    that match no targeted module are ignored with a warning, as PEFT 0.21 warns.
//  - fan_in_fan_out true: a warning, then plain LoRA, as PEFT does for nn.Linear targets.
//  - Rejected with a message naming adapter_config.json and the key: bias
//    other than "none", modules_to_save, use_dora and the other LoRA variants (lora_bias,
//    use_qalora, alora_invocation_tokens, kasa/arrow/monteclora/bdlora configs),
//    trainable_token_indices, layer_replication, target_parameters, init_lora_weights that
//    rewrite the base weights (pissa, olora, corda, loftq, lora_ga), and targets other than the
//    seven decoder projections (embed_tokens, lm_head, norms, ...).
// adapter_model.safetensors: "base_model.model.<module>.lora_A.weight" [r, in] and
// ".lora_B.weight" [out, r] (also with an adapter-name infix, ".lora_A.default.weight"; the
// "base_model.model." prefix is optional), F32/F16/BF16. Every targeted module needs both with
// the configured rank; a tensor of a module the config does not target is an error. Only
// adapter_model.bin present: an error asking to convert to safetensors.
#pragma once

#include <filesystem>

#include "core/adapters/adapter.hpp"
#include "core/model/shape.hpp"

namespace lorasched {

// Loads the adapter in `dir` for a base model of `shape`. The adapter's name is the folder name.
LoraAdapterWeights load_peft_adapter(const std::filesystem::path& dir, const ModelShape& shape);

}  // namespace lorasched
