// Every invalid spec or file gives an InputError (exit code 2) with a message that names the
// parameter, or the file and line.
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/common/error.hpp"
#include "core/workload/workload.hpp"
#include "tests/unit/workload/workload_test_util.hpp"

namespace lorasched {
namespace {

using test::fixture;
using test::write_file;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

struct ErrorCase {
  std::string name;
  std::function<void(WorkloadSpec&)> mutate;  // applied to a valid poisson spec
  int32_t num_adapters = 4;
  std::vector<std::string> expect;  // substrings of the message
};

WorkloadSpec valid() {
  WorkloadSpec s;
  s.arrival = "poisson";
  s.rate = 2.0;
  s.num_requests = 10;
  return s;
}

std::function<void(WorkloadSpec&)> azure(const std::filesystem::path& p) {
  return [p](WorkloadSpec& s) {
    s.arrival = "trace";
    s.trace = p;
  };
}

std::function<void(WorkloadSpec&)> adapter_trace(const std::filesystem::path& p) {
  return [p](WorkloadSpec& s) {
    s.arrival = "adapter-trace";
    s.trace = p;
  };
}

std::function<void(WorkloadSpec&)> artifact(std::function<void(ArtifactSpec&)> f) {
  return [f](WorkloadSpec& s) {
    s.arrival = "artifact";
    s.artifact.num_functions = 8;
    s.artifact.num_bins = 4;
    s.artifact.interval_minutes = 2;
    f(s.artifact);
  };
}

std::vector<ErrorCase> cases() {
  const std::string hdr = "TIMESTAMP,ContextTokens,GeneratedTokens\n";
  const std::string row = "2023-11-16 18:17:03.9799600,10,5\n";
  const auto empty = write_file("e_empty.csv", hdr);
  const auto no_header = write_file("e_nohdr.csv", "");
  const auto bad_header = write_file("e_badhdr.csv", "TIMESTAMP,Prompt,Output\n" + row);
  const auto bad_time = write_file("e_badtime.csv", hdr + row + "2023-11-16 18:17:3.1,10,5\n");
  const auto bad_day = write_file("e_badday.csv", hdr + "2023-02-30 18:17:03.1,10,5\n");
  const auto long_frac = write_file("e_frac.csv", hdr + "2023-11-16 18:17:03.12345678,10,5\n");
  const auto neg_tokens = write_file("e_neg.csv", hdr + row + row + "2023-11-16 18:17:04,-3,5\n");
  const auto fields = write_file("e_fields.csv", hdr + row + "2023-11-16 18:17:04,3\n");
  const auto unsorted = write_file(
      "e_unsorted.csv", hdr + row + "2023-11-16 18:17:04,1,1\n2023-11-16 18:17:03,1,1\n");
  const std::string ahdr = "arrival_s,adapter,prompt_tokens,output_tokens\n";
  const auto a_header = write_file("e_ahdr.csv", "arrival,adapter,prompt,output\n0,0,1,1\n");
  const auto a_range = write_file("e_arange.csv", ahdr + "0.5,0,1,1\n0.6,4,1,1\n");
  const auto a_neg = write_file("e_aneg.csv", ahdr + "0.5,-1,1,1\n");
  const auto a_decr = write_file("e_adecr.csv", ahdr + "0.5,0,1,1\n0.25,1,1,1\n");
  const auto a_zero = write_file("e_azero.csv", ahdr + "0.5,0,1,1\n0.6,1,1,0\n");
  const auto a_nan = write_file("e_anan.csv", ahdr + "nan,0,1,1\n");
  const auto a_empty = write_file("e_aempty.csv", ahdr);
  const auto c_header = write_file("e_chdr.csv", "function,b0,b1\nf,1,2\n");
  const auto c_value = write_file("e_cval.csv", "function,bin0,bin1\nf,1,2\ng,1,x\n");
  const auto c_zero = write_file("e_czero.csv", "function,bin0,bin1\nf,0,0\n");
  const auto code = fixture("azure_code_300.csv");

  auto e = [](std::string n, std::function<void(WorkloadSpec&)> m, std::vector<std::string> x,
              int32_t adapters = 4) {
    return ErrorCase{std::move(n), std::move(m), adapters, std::move(x)};
  };
  return {
      e(
          "num_adapters", [](WorkloadSpec&) {}, {"num_adapters must be >= 1", "got 0"}, 0),
      e("rate zero", [](WorkloadSpec& s) { s.rate = 0; },
        {"rate must be a finite number > 0", "got 0"}),
      e("rate negative", [](WorkloadSpec& s) { s.rate = -1; }, {"rate", "got -1"}),
      e("rate nan", [](WorkloadSpec& s) { s.rate = kNaN; }, {"rate", "nan"}),
      e("cv zero", [](WorkloadSpec& s) { s.arrival = "gamma", s.cv = 0; }, {"cv must be", "got 0"}),
      e("cv inf", [](WorkloadSpec& s) { s.arrival = "gamma", s.cv = kInf; }, {"cv must be", "inf"}),
      e("no stop", [](WorkloadSpec& s) { s.num_requests.reset(); },
        {"needs num_requests or duration_s"}),
      e("num_requests 0", [](WorkloadSpec& s) { s.num_requests = 0; },
        {"num_requests must be >= 1"}),
      e("duration nan", [](WorkloadSpec& s) { s.duration_s = kNaN; }, {"duration_s", "nan"}),
      e("max_prompt", [](WorkloadSpec& s) { s.max_prompt_tokens = 0; },
        {"max_prompt_tokens must be >= 1"}),
      e("arrival kind", [](WorkloadSpec& s) { s.arrival = "bursty"; },
        {"unknown arrival kind 'bursty'", "poisson, gamma, trace, adapter-trace, artifact"}),
      e("popularity kind", [](WorkloadSpec& s) { s.popularity.kind = "hot"; },
        {"unknown popularity kind 'hot'", "uniform, zipf, drifting, trace"}),
      e("length kind", [](WorkloadSpec& s) { s.output.kind = "normal"; },
        {"unknown output length kind 'normal'", "fixed, uniform, lognormal, trace, from-trace"}),
      e("zipf nan", [](WorkloadSpec& s) { s.popularity.kind = "zipf", s.popularity.zipf_s = kNaN; },
        {"popularity.zipf_s", "nan"}),
      e("hot_count",
        [](WorkloadSpec& s) { s.popularity.kind = "drifting", s.popularity.hot_count = 5; },
        {"popularity.hot_count must be in [1, num_adapters = 4]", "got 5"}),
      e("hot_share",
        [](WorkloadSpec& s) { s.popularity.kind = "drifting", s.popularity.hot_share = 1.5; },
        {"popularity.hot_share must be in [0, 1]"}),
      e("drift period",
        [](WorkloadSpec& s) { s.popularity.kind = "drifting", s.popularity.drift_period_s = kInf; },
        {"popularity.drift_period_s", "inf"}),
      e("popularity trace", [](WorkloadSpec& s) { s.popularity.kind = "trace"; },
        {"popularity 'trace' needs arrival 'adapter-trace'"}),
      e("from-trace", [](WorkloadSpec& s) { s.prompt.kind = "from-trace"; },
        {"prompt length kind 'from-trace' needs arrival 'trace'"}),
      e("fixed value", [](WorkloadSpec& s) { s.output.value = 0; }, {"output.value must be >= 1"}),
      e("uniform range", [](WorkloadSpec& s) { s.prompt = {"uniform", 0, 10, 5, 0, 0, {}}; },
        {"prompt.max (5) must be >= prompt.min (10)"}),
      e("lognormal median", [](WorkloadSpec& s) { s.prompt = {"lognormal", 0, 1, 5, kNaN, 1, {}}; },
        {"prompt.median", "nan"}),
      e("lognormal sigma", [](WorkloadSpec& s) { s.prompt = {"lognormal", 0, 1, 5, 10, -1, {}}; },
        {"prompt.sigma must be a finite number >= 0"}),
      e("length trace no file", [](WorkloadSpec& s) { s.prompt = {"trace", 0, 1, 5, 1, 1, {}}; },
        {"prompt length kind 'trace' needs a trace file"}),
      e("length trace missing",
        [](WorkloadSpec& s) { s.output = {"trace", 0, 1, 5, 1, 1, "/nonexistent/lengths.csv"}; },
        {"trace file '/nonexistent/lengths.csv' does not exist"}),
      // Azure LLM trace.
      e("trace no file", azure(""), {"arrival 'trace' needs a trace file"}),
      e("trace missing", azure("/nonexistent/azure.csv"),
        {"'/nonexistent/azure.csv' does not exist"}),
      e("trace empty", azure(empty), {"e_empty.csv' has no requests"}),
      e("trace no header", azure(no_header), {"e_nohdr.csv:1: empty file"}),
      e("trace header", azure(bad_header),
        {"e_badhdr.csv:1: header is 'TIMESTAMP,Prompt,Output'",
         "TIMESTAMP,ContextTokens,GeneratedTokens"}),
      e("trace timestamp", azure(bad_time), {"e_badtime.csv:3: TIMESTAMP '2023-11-16 18:17:3.1'"}),
      e("trace day", azure(bad_day), {"e_badday.csv:2: TIMESTAMP"}),
      e("trace fraction", azure(long_frac), {"e_frac.csv:2: TIMESTAMP", "fffffff"}),
      e("trace tokens", azure(neg_tokens),
        {"e_neg.csv:4: ContextTokens '-3' is not a non-negative integer"}),
      e("trace fields", azure(fields), {"e_fields.csv:3: expected 3 fields, found 2"}),
      e("trace unsorted", azure(unsorted),
        {"e_unsorted.csv:4: TIMESTAMP '2023-11-16 18:17:03'", "earlier than the previous row",
         "sorted"}),
      e("time_scale", [code](WorkloadSpec& s) { azure(code)(s), s.time_scale = 0; },
        {"time_scale must be"}),
      e("target_rate", [code](WorkloadSpec& s) { azure(code)(s), s.target_rate = -2; },
        {"target_rate must be", "got -2"}),
      e("scale and target",
        [code](WorkloadSpec& s) { azure(code)(s), s.time_scale = 2, s.target_rate = 1; },
        {"set time_scale or target_rate, not both"}),
      e("trace_start", [code](WorkloadSpec& s) { azure(code)(s), s.trace_start_s = kNaN; },
        {"trace_start_s", "nan"}),
      e("trace_start past end", [code](WorkloadSpec& s) { azure(code)(s), s.trace_start_s = 1e6; },
        {"has no requests at or after trace_start_s = 1000000"}),
      e("target rate one request",
        [code](WorkloadSpec& s) { azure(code)(s), s.num_requests = 1, s.target_rate = 1; },
        {"target_rate needs at least two requests"}),
      // Adapter trace.
      e("adapter header", adapter_trace(a_header),
        {"e_ahdr.csv:1: header is 'arrival,adapter,prompt,output'",
         "arrival_s,adapter,prompt_tokens,output_tokens"}),
      e("adapter range", adapter_trace(a_range),
        {"e_arange.csv:3: adapter '4' is not an adapter id in [0, 4)"}),
      e("adapter negative", adapter_trace(a_neg), {"e_aneg.csv:2: adapter '-1'"}),
      e("adapter decreasing", adapter_trace(a_decr),
        {"e_adecr.csv:3: arrival_s 0.25 is earlier", "non-decreasing"}),
      e("adapter zero length", adapter_trace(a_zero),
        {"e_azero.csv:3: output_tokens must be >= 1"}),
      e("adapter nan", adapter_trace(a_nan),
        {"e_anan.csv:2: arrival_s 'nan' is not a finite number"}),
      e("adapter empty", adapter_trace(a_empty), {"e_aempty.csv' has no requests"}),
      e("adapter popularity",
        [a_range](WorkloadSpec& s) { adapter_trace(a_range)(s), s.popularity.kind = "zipf"; },
        {"popularity 'zipf' cannot be used with arrival 'adapter-trace'"}),
      e("adapter lengths",
        [a_range](WorkloadSpec& s) { adapter_trace(a_range)(s), s.prompt.kind = "uniform"; },
        {"prompt length kind 'uniform' cannot be used with arrival 'adapter-trace'"}),
      // Artifact.
      e("artifact stride", artifact([](ArtifactSpec& a) { a.map_stride = 0; }),
        {"artifact.map_stride must be >= 1", "got 0"}),
      e("artifact no count",
        [](WorkloadSpec& s) { artifact([](ArtifactSpec&) {})(s), s.num_requests.reset(); },
        {"arrival 'artifact' needs num_requests"}),
      e("artifact cv", [](WorkloadSpec& s) { artifact([](ArtifactSpec&) {})(s), s.cv = -1; },
        {"cv must be"}),
      e("artifact popularity",
        [](WorkloadSpec& s) { artifact([](ArtifactSpec&) {})(s), s.popularity.kind = "zipf"; },
        {"popularity 'zipf' cannot be used with arrival 'artifact'"}),
      e("artifact function kind",
        artifact([](ArtifactSpec& a) { a.function_popularity = "pareto"; }),
        {"unknown artifact.function_popularity 'pareto'", "lognormal, zipf"}),
      e("artifact rate_share", artifact([](ArtifactSpec& a) { a.rate_share = "bin"; }),
        {"unknown artifact.rate_share 'bin'", "interval, window"}),
      e("artifact quota", artifact([](ArtifactSpec& a) { a.quota = "proportional"; }),
        {"unknown artifact.quota 'proportional'", "even, invocations"}),
      e("artifact gaps", artifact([](ArtifactSpec& a) { a.gaps = "numpy"; }),
        {"unknown artifact.gaps 'numpy'", "independent, numpy-reseed"}),
      e("artifact functions", artifact([](ArtifactSpec& a) { a.num_functions = 0; }),
        {"artifact.num_functions must be >= 1"}),
      e("artifact bins", artifact([](ArtifactSpec& a) { a.num_bins = 0; }),
        {"artifact.num_bins must be >= 1"}),
      e("artifact sigma", artifact([](ArtifactSpec& a) { a.function_sigma = kNaN; }),
        {"artifact.function_sigma", "nan"}),
      e("artifact intensity", artifact([](ArtifactSpec& a) { a.intensity_sigma = -0.1; }),
        {"artifact.intensity_sigma"}),
      e("artifact interval", artifact([](ArtifactSpec& a) { a.interval_minutes = 2.5; }),
        {"artifact.interval_minutes (2.5) must be a whole multiple of artifact.bin_minutes (1)"}),
      e("artifact bin minutes", artifact([](ArtifactSpec& a) { a.bin_minutes = kInf; }),
        {"artifact.bin_minutes", "inf"}),
      e("artifact counts missing",
        artifact([](ArtifactSpec& a) { a.function_counts = "/nonexistent/f.csv"; }),
        {"function counts file '/nonexistent/f.csv' does not exist"}),
      e("artifact counts header",
        artifact([c_header](ArtifactSpec& a) { a.function_counts = c_header; }),
        {"e_chdr.csv:1: header is 'function,b0,b1'", "function,bin0,bin1,..."}),
      e("artifact counts value",
        artifact([c_value](ArtifactSpec& a) { a.function_counts = c_value; }),
        {"e_cval.csv:3: bin1 count 'x' is not a finite number >= 0"}),
      e("artifact counts zero", artifact([c_zero](ArtifactSpec& a) { a.function_counts = c_zero; }),
        {"e_czero.csv' has no invocations"}),
  };
}

TEST(WorkloadErrors, EveryErrorHasItsMessage) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.name);
    WorkloadSpec s = valid();
    c.mutate(s);
    try {
      generate_workload(s, c.num_adapters, 1);
      ADD_FAILURE() << "no error";
    } catch (const InputError& err) {
      EXPECT_EQ(err.code(), ExitCode::input);
      const std::string msg = err.what();
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
      for (const auto& x : c.expect)
        EXPECT_NE(msg.find(x), std::string::npos) << "'" << x << "' not in: " << msg;
    } catch (const std::exception& err) {
      ADD_FAILURE() << "not an InputError: " << err.what();
    }
  }
}

TEST(WorkloadErrors, MapStrideAndAdapterCountInTheMapping) {
  const FunctionCounts c(4, std::vector<double>{1.0});
  EXPECT_THROW(map_functions_to_adapters(c, 4, 0), InputError);
  EXPECT_THROW(map_functions_to_adapters(c, 0, 1), InputError);
}

TEST(WorkloadErrors, WriteToMissingFolder) {
  EXPECT_THROW(write_adapter_trace("/nonexistent/dir/out.csv", {}), InputError);
}

}  // namespace
}  // namespace lorasched
