// Fuzz target: the workload's trace files (core/workload): the Azure LLM trace CSV, the
// adapter trace CSV and the artifact generator's function-count CSV. The first byte picks
// the format and a few WorkloadSpec settings (time window, rescaling, lengths); the rest is
// written to a file that generate_workload reads. Whatever it returns must be a valid
// workload (sorted arrivals, ids 0..n-1, adapters in range, lengths >= 1).
#include <cmath>
#include <string>

#include "core/workload/workload.hpp"
#include "fuzz/fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lorasched;
  if (size < 1) return 0;
  const uint8_t sel = data[0];
  const auto file = fuzz::scratch_dir() / "trace.csv";
  fuzz::write_file(file, fuzz::as_text(data + 1, size - 1));

  constexpr int32_t kAdapters = 4;
  WorkloadSpec spec;
  switch (sel % 4) {
    case 0:  // Azure trace, its own lengths
      spec.arrival = "trace";
      spec.trace = file;
      spec.prompt.kind = spec.output.kind = "from-trace";
      break;
    case 1:  // adapter trace
      spec.arrival = "adapter-trace";
      spec.trace = file;
      spec.popularity.kind = "trace";
      spec.prompt.kind = spec.output.kind = "from-trace";
      break;
    case 2:  // Azure trace as a length trace of a generated workload
      spec.arrival = "poisson";
      spec.rate = 5;
      spec.num_requests = 16;
      spec.prompt.kind = spec.output.kind = "trace";
      spec.prompt.trace = spec.output.trace = file;
      break;
    case 3:  // the artifact generator's function counts
      spec.arrival = "artifact";
      spec.rate = 4;
      spec.num_requests = 24;
      spec.artifact.function_counts = file;
      spec.artifact.interval_minutes = (sel & 0x10) ? 2.0 : 60.0;
      spec.artifact.rate_share = (sel & 0x20) ? "window" : "interval";
      spec.artifact.map_stride = 1 + ((sel >> 6) & 3);
      spec.artifact.quota = (sel & 0x04) ? "invocations" : "even";
      spec.artifact.gaps = (sel & 0x08) ? "numpy-reseed" : "independent";
      break;
  }
  if (sel % 4 < 2) {  // the trace window and rescaling
    if (sel & 0x04) spec.num_requests = 8;
    if (sel & 0x08) spec.trace_start_s = 0.5;
    if (sel & 0x10)
      spec.target_rate = 3.0;
    else if (sel & 0x20)
      spec.time_scale = 0.25;
    if (sel & 0x40) spec.duration_s = 2.0;
    if (sel & 0x80) spec.max_prompt_tokens = spec.max_output_tokens = 64;
  }
  fuzz::run_one("fuzz_trace", [&] {
    const auto reqs = generate_workload(spec, kAdapters, /*seed=*/7);
    if (reqs.empty()) fuzz::finding("fuzz_trace", "generate_workload returned no request");
    for (size_t i = 0; i < reqs.size(); ++i) {
      const RequestSpec& r = reqs[i];
      if (r.id != static_cast<int64_t>(i) || !std::isfinite(r.arrival) || r.arrival < 0 ||
          (i > 0 && r.arrival < reqs[i - 1].arrival) || r.adapter < 0 || r.adapter >= kAdapters ||
          r.prompt_tokens < 1 || r.output_tokens < 1)
        fuzz::finding("fuzz_trace", "invalid request " + std::to_string(i) + ": arrival " +
                                        std::to_string(r.arrival) + " adapter " +
                                        std::to_string(r.adapter) + " prompt " +
                                        std::to_string(r.prompt_tokens) + " output " +
                                        std::to_string(r.output_tokens));
    }
  });
  return 0;
}
