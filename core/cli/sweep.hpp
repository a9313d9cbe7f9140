// Sweeps beyond one process: shards of the points, worker processes on one machine (-j), and
// the merge of per-point or per-shard results files into one (docs/user-guide.md, "Running
// sweeps in parallel"). The HDF5 C++ API is not thread-safe, so parallel points are separate
// processes writing separate files, merged afterwards by one writer.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "core/config/experiment.hpp"
#include "core/metrics/h5.hpp"

namespace lorasched {

// --shard I/N: the points I, I+N, I+2N, ... of the sweep (0 <= I < N).
struct Shard {
  int index = 0;
  int count = 1;
};
// Parses "I/N"; "" is the whole sweep (0/1). Throws InputError.
Shard parse_shard(const std::string& text);
std::vector<size_t> shard_points(size_t points, Shard shard);
// results/x.h5 -> results/x.shard-1-of-4.h5 (0-based I, as Slurm's array task ids).
std::filesystem::path shard_output(const std::filesystem::path& output, Shard shard);
// The run group of sweep point `index`: "007".
std::string point_group(size_t index);
// The row name of a point in tables: its sweep label, or the run name without a sweep.
std::string point_label(const Experiment& e);

// The root attributes of a results file made from `exps` (all points of the sweep) with these
// --set overrides; `shard` "I/N" or "".
FileProvenance make_provenance(const std::vector<Experiment>& exps,
                               const std::vector<std::string>& overrides, const std::string& shard);
// "" when a and b come from the same experiment text, overrides, build and sweep size (the
// shard may differ); else what differs, in words.
std::string provenance_mismatch(const FileProvenance& a, const FileProvenance& b);

// Writes `output` (.partial, then renamed) with `provenance` as its root and the run groups
// copied from the files given per group, in the order given.
void write_merged(const std::filesystem::path& output, const FileProvenance& provenance,
                  const std::vector<std::pair<std::string, std::filesystem::path>>& runs);

// Runs `points` of `exps` in up to `jobs` worker processes (this binary, `run
// --worker`, fed point numbers on stdin), each point writing OUTPUT.parts/<group>.h5, shows one
// progress display, and merges the parts into `output`, removing them. With `resume`, points found
// complete in `output` or in OUTPUT.parts/ (same experiment text, overrides and build) are not run
// again. A failed point: no new point starts, the running ones finish, Error with the
// worker's exit code; the completed parts stay for --resume. SIGINT, SIGTERM or SIGHUP: the
// workers are stopped, their partial files removed, the completed parts kept, nothing is
// written under `output`, and the process ends by the same signal.
struct ParallelRun {
  std::string file;                    // the experiment file, as given
  std::vector<std::string> overrides;  // --set, passed on to the workers
  const std::vector<Experiment>* exps = nullptr;
  std::vector<size_t> points;
  std::filesystem::path output;
  FileProvenance provenance;
  int jobs = 1;
  bool resume = false;
  bool quiet = false;
};
void run_parallel(const ParallelRun& run);

}  // namespace lorasched
