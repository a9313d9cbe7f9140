// The results file: one HDF5 file per run or sweep, one group per run (layout and fields in
// docs/results-format.md). One writer per file (the HDF5 C++ API is not thread-safe: call
// it from one thread), written as NAME.h5.partial and renamed to NAME.h5 by commit(), so a
// failed or killed run never leaves a file under the final name.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/metrics/records.hpp"

namespace lorasched {

inline constexpr const char* kResultsFormat = "lorasched-results";
inline constexpr int64_t kResultsFormatVersion = 1;

// What produced a run: the group attributes of /runs/<group>.
struct RunAttributes {
  std::string label;            // e.g. "scheduler.plugin=dlora workload.rate=2"
  std::string experiment_path;  // the experiment file as given
  std::string experiment_toml;  // its full text (with the sweep point's overrides applied)
  std::string version;          // lorasched version
  std::string git_revision;
  std::vector<std::pair<std::string, std::string>> plugins;  // kind -> "name api=1 path=..."
  uint64_t seed = 0;
  std::string executor;
  std::string device;
  std::string host;
  std::vector<std::pair<std::string, std::string>> extra;  // more string attributes

  bool operator==(const RunAttributes&) const = default;
};

// What a whole file was made from (root attributes): `lorasched merge` checks that shards
// share it, `--resume` that the pieces it reuses were made by the same experiment and build.
struct FileProvenance {
  std::string experiment_file_toml;  // the experiment file's text
  std::string overrides;             // the --set overrides, space-separated
  std::string build;                 // "lorasched <version> (git <revision>)"
  int64_t points = 0;                // sweep points of the experiment (all shards together)
  std::string shard;                 // "I/N" for a shard's file, "" for all points

  bool operator==(const FileProvenance&) const = default;
};

class ResultsWriter {
 public:
  // Creates the parent directories and `path`.partial (replacing a stale one), with root
  // status "incomplete". Throws Error (exit 1) when it cannot.
  explicit ResultsWriter(std::filesystem::path path);
  ~ResultsWriter();  // without commit() or fail(): closes, leaves .partial, status incomplete
  ResultsWriter(const ResultsWriter&) = delete;
  ResultsWriter& operator=(const ResultsWriter&) = delete;

  // Writes the group /runs/<group> (attributes, datasets requests, iterations, events, and
  // batches when log_batches, subgroup summary) and flushes the file. Throws Error (exit 1)
  // on an I/O failure, InternalError for a duplicate group, a bad attribute name or an
  // enum value out of range.
  void write_run(const std::string& group, const RunAttributes& attrs, const RunRecords& records,
                 const Summary& summary, bool log_batches);

  // Root attributes experiment_file_toml, overrides, build, points, shard.
  void set_provenance(const FileProvenance& p);

  // Copies the runs /runs/<group> of the complete results file `source` unchanged (records,
  // attributes, summary), as `lorasched merge` does. Throws InputError when `source` is not
  // a complete results file or lacks a group, Error (exit 1) on an I/O failure,
  // InternalError when a group is already in this file.
  void copy_runs(const std::filesystem::path& source, const std::vector<std::string>& groups);

  // Root status "complete", closes, renames .partial to the final name (replacing an
  // existing file at that moment only).
  void commit();
  // Root status "failed" and attribute error = message, closes, leaves .partial. Never
  // throws (it runs on error paths); a failure to record it is ignored.
  void fail(const std::string& message) noexcept;

  const std::filesystem::path& path() const { return path_; }
  const std::filesystem::path& partial_path() const { return partial_; }

 private:
  struct File;
  std::filesystem::path path_, partial_;
  std::unique_ptr<File> file_;
};

struct StoredRun {
  std::string group;
  RunAttributes attrs;
  RunRecords records;
  Summary summary;
  bool has_batches = false;  // the run has a `batches` dataset ([metrics] log_batches)
};

// The root of a complete results file and its runs' names and labels, without the records.
struct ResultsHeader {
  std::optional<FileProvenance> provenance;  // absent in files written before it existed
  std::vector<std::pair<std::string, std::string>> runs;  // (group, label), in group order
  std::vector<Summary> summaries;                         // the runs' summaries, same order
};
// Throws InputError as read_results does.
ResultsHeader read_results_header(const std::filesystem::path& path);

// Every run of a complete results file, in group-name order. Throws InputError naming the
// file when it is missing, a .partial, not complete, not HDF5, not a lorasched results file
// or unreadable.
std::vector<StoredRun> read_results(const std::filesystem::path& path);

}  // namespace lorasched
