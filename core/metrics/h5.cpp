#include "core/metrics/h5.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <H5Cpp.h>

#include <algorithm>
#include <cstddef>
#include <optional>
#include <system_error>
#include <tuple>
#include <variant>

#include <fmt/format.h>

#include "core/common/error.hpp"
#include "core/metrics/fields.hpp"
#include "core/metrics/summary.hpp"

namespace lorasched {

namespace fs = std::filesystem;

namespace {

// ---- types ---------------------------------------------------------------------------------

constexpr hsize_t kChunkRows = 4096;
// Level 1: after the shuffle filter, within 3% of level 4's size at half its time
// (docs/results-format.md).
constexpr int kDeflateLevel = 1;

H5::EnumType make_enum(FieldEnum e) {
  H5::EnumType type(sizeof(int8_t));  // signed native 8-bit base
  const auto names = enum_names(e);
  for (size_t i = 0; i < names.size(); ++i) {
    auto value = static_cast<int8_t>(i);
    type.insert(names[i], &value);
  }
  return type;
}

H5::DataType mem_type(FieldType t) {
  switch (t) {
    case FieldType::i8:
      return H5::PredType::NATIVE_INT8;
    case FieldType::i32:
      return H5::PredType::NATIVE_INT32;
    case FieldType::i64:
      return H5::PredType::NATIVE_INT64;
    case FieldType::u64:
      return H5::PredType::NATIVE_UINT64;
    case FieldType::f64:
      break;
  }
  return H5::PredType::NATIVE_DOUBLE;
}

// Packed, little-endian.
H5::DataType file_type(FieldType t) {
  switch (t) {
    case FieldType::i8:
      return H5::PredType::STD_I8LE;
    case FieldType::i32:
      return H5::PredType::STD_I32LE;
    case FieldType::i64:
      return H5::PredType::STD_I64LE;
    case FieldType::u64:
      return H5::PredType::STD_U64LE;
    case FieldType::f64:
      break;
  }
  return H5::PredType::IEEE_F64LE;
}

template <class M>
struct Types {
  static H5::DataType mem() { return mem_type(field_type_of<M>()); }
  static H5::DataType file() { return file_type(field_type_of<M>()); }
};

// The in-memory compound type (the C++ struct's layout) and the file's (packed,
// little-endian), members named as the C++ members, from the record's field table.
struct TableType {
  H5::CompType mem, file;
};

template <class Record>
TableType build_table_type() {
  const auto& fields = RecordTable<Record>::fields;
  std::vector<std::pair<H5::DataType, H5::DataType>> types;  // (mem, file) per field
  size_t file_size = 0;
  for (const FieldInfo& f : fields) {
    if (f.enumeration != FieldEnum::none) {
      const H5::EnumType e = make_enum(f.enumeration);
      types.emplace_back(e, e);
    } else {
      types.emplace_back(mem_type(f.type), file_type(f.type));
    }
    file_size += types.back().second.getSize();
  }
  TableType t{H5::CompType(sizeof(Record)), H5::CompType(file_size)};
  size_t offset = 0;
  for (size_t i = 0; i < fields.size(); ++i) {
    t.mem.insertMember(fields[i].name, fields[i].offset, types[i].first);
    t.file.insertMember(fields[i].name, offset, types[i].second);
    offset += types[i].second.getSize();
  }
  return t;
}

template <class Record>
const TableType& table_type() {
  static const TableType t = build_table_type<Record>();
  return t;
}

// ---- HDF5 helpers --------------------------------------------------------------------------

// The most specific message on HDF5's error stack (e.g. "unable to open file: name = ...,
// errno = 2, ..."), else the C++ exception's own text.
std::string h5_detail(const H5::Exception& e) {
  std::string innermost;
  hid_t stack = H5Eget_current_stack();
  if (stack >= 0) {
    H5Ewalk2(
        stack, H5E_WALK_UPWARD,
        [](unsigned n, const H5E_error2_t* err, void* data) -> herr_t {
          if (n == 0 && err->desc) *static_cast<std::string*>(data) = err->desc;
          return 0;
        },
        &innermost);
    H5Eclose_stack(stack);
  }
  if (!innermost.empty()) return innermost;
  std::string msg = e.getDetailMsg();
  return msg.empty() ? std::string("HDF5 error") : msg;
}

// File locking where the file system supports it, no failure where it does not (NFS, some
// container mounts).
H5::FileAccPropList file_access() {
  H5::FileAccPropList fapl;
  H5Pset_file_locking(fapl.getId(), true, true);
  return fapl;
}

H5::StrType utf8_string_type() {
  H5::StrType t(H5::PredType::C_S1, H5T_VARIABLE);
  t.setCset(H5T_CSET_UTF8);
  return t;
}

void set_attr(const H5::H5Object& obj, const std::string& name, const std::string& value) {
  const H5::StrType type = utf8_string_type();
  if (obj.attrExists(name)) obj.removeAttr(name);
  obj.createAttribute(name, type, H5::DataSpace(H5S_SCALAR)).write(type, value);
}

template <class T>
void set_attr(const H5::H5Object& obj, const std::string& name, T value) {
  if (obj.attrExists(name)) obj.removeAttr(name);
  obj.createAttribute(name, Types<T>::file(), H5::DataSpace(H5S_SCALAR))
      .write(Types<T>::mem(), &value);
}

// A group whose attributes keep their creation order (h5py lists them so; the reader
// returns plugins and extras in the order they were written).
H5::Group create_ordered_group(const H5::H5Location& parent, const std::string& name) {
  hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
  if (gcpl < 0) throw H5::GroupIException("create_ordered_group", "H5Pcreate failed");
  H5Pset_attr_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
  hid_t id = H5Gcreate2(parent.getId(), name.c_str(), H5P_DEFAULT, gcpl, H5P_DEFAULT);
  H5Pclose(gcpl);
  if (id < 0) throw H5::GroupIException("create_ordered_group", "H5Gcreate2 failed");
  H5::Group group(id);  // takes its own reference
  H5Gclose(id);
  return group;
}

template <class T>
void write_table(const H5::Group& group, const RecordVector<T>& rows) {
  const char* name = RecordTable<T>::dataset;
  const TableType& type = table_type<T>();
  const hsize_t n = rows.size(), max_n = H5S_UNLIMITED;
  const hsize_t chunk = std::clamp<hsize_t>(n, 1, kChunkRows);
  H5::DSetCreatPropList props;
  props.setChunk(1, &chunk);
  props.setShuffle();
  props.setDeflate(kDeflateLevel);
  H5::DataSet ds = group.createDataSet(name, type.file, H5::DataSpace(1, &n, &max_n), props);
  if (n > 0) ds.write(rows.data(), type.mem);
}

// Every enum field of every row holds one of its enum's values.
template <class T>
void check_enum_ranges(const RecordVector<T>& rows) {
  RecordTable<T>::for_each([&](const FieldInfo& f, auto member) {
    if (f.enumeration == FieldEnum::none) return;
    const auto count = static_cast<int>(enum_names(f.enumeration).size());
    for (size_t i = 0; i < rows.size(); ++i) {
      const int v = static_cast<int>(rows[i].*member);
      LORASCHED_CHECK(v >= 0 && v < count, "{}.{} row {}: value {} is not one of the {} names",
                      RecordTable<T>::dataset, f.name, i, v, count);
    }
  });
}

void fsync_path(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

// ---- writer --------------------------------------------------------------------------------

struct ResultsWriter::File {
  H5::H5File h5;
};

ResultsWriter::ResultsWriter(fs::path path) : path_(std::move(path)) {
  H5::Exception::dontPrint();
  partial_ = path_;
  partial_ += ".partial";
  std::error_code ec;
  if (path_.has_parent_path()) {
    fs::create_directories(path_.parent_path(), ec);
    if (ec)
      throw Error(ExitCode::runtime,
                  fmt::format("{}: cannot create the directory {}: {}", path_.string(),
                              path_.parent_path().string(), ec.message()));
  }
  try {
    H5::FileCreatPropList fcpl;
    H5Pset_attr_creation_order(fcpl.getId(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
    auto file = std::make_unique<File>(
        File{H5::H5File(partial_.string(), H5F_ACC_TRUNC, fcpl, file_access())});
    H5::Group root = file->h5.openGroup("/");
    set_attr(root, "status", std::string("incomplete"));
    set_attr(root, "format", std::string(kResultsFormat));
    set_attr(root, "format_version", kResultsFormatVersion);
    file->h5.createGroup("runs");
    file->h5.flush(H5F_SCOPE_GLOBAL);
    file_ = std::move(file);
  } catch (const H5::Exception& e) {
    throw Error(ExitCode::runtime, fmt::format("{}: cannot create the results file: {}",
                                               partial_.string(), h5_detail(e)));
  }
}

ResultsWriter::~ResultsWriter() {
  try {
    if (file_) file_->h5.close();
  } catch (...) {
  }
}

namespace {

// Checks a run's group name and attribute names (they must be unique).
void check_run_names(const std::string& group, const RunAttributes& attrs) {
  LORASCHED_CHECK(
      !group.empty() && group.find('/') == std::string::npos && group != "." && group != "..",
      "bad run group name '{}'", group);
  // Attribute names of the group: the fixed ones, plugin.<kind>, then the extras.
  std::vector<std::string> names{"label",    "experiment_path", "experiment_toml",
                                 "version",  "git_revision",    "seed",
                                 "executor", "device",          "host"};
  for (const auto& [kind, _] : attrs.plugins) {
    LORASCHED_CHECK(!kind.empty(), "empty plugin kind in run {}", group);
    names.push_back("plugin." + kind);
  }
  for (const auto& [key, _] : attrs.extra) {
    LORASCHED_CHECK(!key.empty() && !key.starts_with("plugin."),
                    "extra attribute '{}' of run {}: empty or reserved (plugin.*)", key, group);
    names.push_back(key);
  }
  std::vector<std::string> sorted = names;
  std::sort(sorted.begin(), sorted.end());
  auto dup = std::adjacent_find(sorted.begin(), sorted.end());
  LORASCHED_CHECK(dup == sorted.end(), "attribute '{}' of run {} given twice", *dup, group);
}

// /runs/<group> with its attributes, then `tables` writes the datasets into it, then the
// summary group: the layout of every run, however its datasets are made.
template <class Tables>
void write_run_group(H5::H5File& h5, const std::filesystem::path& path, const std::string& group,
                     const RunAttributes& attrs, const Summary& summary, Tables tables) {
  H5::Group runs = h5.openGroup("runs");
  LORASCHED_CHECK(!runs.nameExists(group), "run group /runs/{} written twice in {}", group,
                  path.string());
  H5::Group g = create_ordered_group(runs, group);
  set_attr(g, "label", attrs.label);
  set_attr(g, "experiment_path", attrs.experiment_path);
  set_attr(g, "experiment_toml", attrs.experiment_toml);
  set_attr(g, "version", attrs.version);
  set_attr(g, "git_revision", attrs.git_revision);
  set_attr(g, "seed", attrs.seed);
  set_attr(g, "executor", attrs.executor);
  set_attr(g, "device", attrs.device);
  set_attr(g, "host", attrs.host);
  for (const auto& [kind, desc] : attrs.plugins) set_attr(g, "plugin." + kind, desc);
  for (const auto& [key, value] : attrs.extra) set_attr(g, key, value);
  tables(g);
  H5::Group s = create_ordered_group(g, "summary");
  RecordTable<Summary>::for_each(
      [&](const FieldInfo& f, auto member) { set_attr(s, f.name, summary.*member); });
  h5.flush(H5F_SCOPE_GLOBAL);
}

}  // namespace

void ResultsWriter::write_run(const std::string& group, const RunAttributes& attrs,
                              const RunRecords& records, const Summary& summary, bool log_batches) {
  LORASCHED_CHECK(file_ != nullptr, "write_run on {} after commit() or fail()", path_.string());
  check_run_names(group, attrs);
  check_enum_ranges(records.requests);
  check_enum_ranges(records.iterations);
  check_enum_ranges(records.events);
  check_enum_ranges(records.batches);
  try {
    write_run_group(file_->h5, path_, group, attrs, summary, [&](const H5::Group& g) {
      write_table(g, records.requests);
      write_table(g, records.iterations);
      write_table(g, records.events);
      if (log_batches) write_table(g, records.batches);
    });
  } catch (const H5::Exception& e) {
    throw Error(ExitCode::runtime,
                fmt::format("{}: cannot write run {}: {}", partial_.string(), group, h5_detail(e)));
  }
}

void ResultsWriter::set_provenance(const FileProvenance& p) {
  LORASCHED_CHECK(file_ != nullptr, "set_provenance on {} after commit() or fail()",
                  path_.string());
  try {
    H5::Group root = file_->h5.openGroup("/");
    set_attr(root, "experiment_file_toml", p.experiment_file_toml);
    set_attr(root, "overrides", p.overrides);
    set_attr(root, "build", p.build);
    set_attr(root, "points", p.points);
    set_attr(root, "shard", p.shard);
  } catch (const H5::Exception& e) {
    throw Error(ExitCode::runtime, fmt::format("{}: cannot write the root attributes: {}",
                                               partial_.string(), h5_detail(e)));
  }
}

void ResultsWriter::commit() {
  LORASCHED_CHECK(file_ != nullptr, "commit on {} after commit() or fail()", path_.string());
  try {
    set_attr(file_->h5.openGroup("/"), "status", std::string("complete"));
    file_->h5.close();
    file_.reset();
  } catch (const H5::Exception& e) {
    file_.reset();
    throw Error(ExitCode::runtime, fmt::format("{}: cannot finish the results file: {}",
                                               partial_.string(), h5_detail(e)));
  }
  fsync_path(partial_);
  std::error_code ec;
  fs::rename(partial_, path_, ec);
  if (ec)
    throw Error(ExitCode::runtime, fmt::format("cannot rename {} to {}: {}", partial_.string(),
                                               path_.string(), ec.message()));
  if (path_.has_parent_path()) fsync_path(path_.parent_path());
}

void ResultsWriter::fail(const std::string& message) noexcept {
  if (!file_) return;
  try {
    H5::Group root = file_->h5.openGroup("/");
    set_attr(root, "status", std::string("failed"));
    set_attr(root, "error", message);
  } catch (...) {
  }
  try {
    file_->h5.close();
  } catch (...) {
  }
  file_.reset();
}

// ---- reader --------------------------------------------------------------------------------

namespace {

class Reader {
 public:
  explicit Reader(std::string name) : name_(std::move(name)) {}

  [[noreturn]] void corrupt(const std::string& what) const {
    throw InputError(fmt::format("{}: corrupt results file: {}", name_, what));
  }

  std::optional<std::string> string_attr(const H5::H5Object& obj, const std::string& attr) const {
    if (!obj.attrExists(attr)) return std::nullopt;
    H5::Attribute a = obj.openAttribute(attr);
    if (a.getTypeClass() != H5T_STRING) corrupt(fmt::format("attribute {} is not a string", attr));
    std::string value;
    a.read(a.getStrType(), value);
    return value;
  }

  template <class T>
  std::optional<T> number_attr(const H5::H5Object& obj, const std::string& attr) const {
    if (!obj.attrExists(attr)) return std::nullopt;
    H5::Attribute a = obj.openAttribute(attr);
    if (a.getTypeClass() != H5T_INTEGER && a.getTypeClass() != H5T_FLOAT)
      corrupt(fmt::format("attribute {} is not a number", attr));
    T value{};
    a.read(Types<T>::mem(), &value);
    return value;
  }

  // Attribute names in creation order where the group tracks it, else in name order.
  std::vector<std::string> attr_names(const H5::Group& g) const {
    H5_index_t index = H5_INDEX_NAME;
    hid_t gcpl = H5Gget_create_plist(g.getId());
    if (gcpl >= 0) {
      unsigned flags = 0;
      if (H5Pget_attr_creation_order(gcpl, &flags) >= 0 && (flags & H5P_CRT_ORDER_TRACKED))
        index = H5_INDEX_CRT_ORDER;
      H5Pclose(gcpl);
    }
    std::vector<std::string> names;
    const int n = g.getNumAttrs();
    for (int i = 0; i < n; ++i) {
      ssize_t len = H5Aget_name_by_idx(g.getId(), ".", index, H5_ITER_INC, hsize_t(i), nullptr, 0,
                                       H5P_DEFAULT);
      if (len < 0) corrupt("cannot list the attributes of " + g.getObjName());
      std::string name(size_t(len) + 1, '\0');
      H5Aget_name_by_idx(g.getId(), ".", index, H5_ITER_INC, hsize_t(i), name.data(), name.size(),
                         H5P_DEFAULT);
      name.resize(size_t(len));
      names.push_back(std::move(name));
    }
    return names;
  }

  template <class T>
  RecordVector<T> table(const H5::Group& g, const std::string& group, bool required) const {
    const char* name = RecordTable<T>::dataset;
    const TableType& type = table_type<T>();
    if (!g.nameExists(name)) {
      if (required) corrupt(fmt::format("run {} has no dataset {}", group, name));
      return {};
    }
    H5::DataSet ds = g.openDataSet(name);
    H5::DataSpace space = ds.getSpace();
    if (ds.getTypeClass() != H5T_COMPOUND || space.getSimpleExtentNdims() != 1)
      corrupt(fmt::format("run {}: dataset {} is not a 1-D table", group, name));
    hsize_t n = 0;
    space.getSimpleExtentDims(&n);
    RecordVector<T> rows;
    rows.resize(n);
    if (n > 0) ds.read(rows.data(), type.mem);
    return rows;
  }

  StoredRun run(const H5::Group& runs, const std::string& group, bool records = true) const {
    StoredRun r;
    r.group = group;
    H5::Group g = runs.openGroup(group);
    RunAttributes& a = r.attrs;
    std::pair<const char*, std::string*> strings[] = {{"label", &a.label},
                                                      {"experiment_path", &a.experiment_path},
                                                      {"experiment_toml", &a.experiment_toml},
                                                      {"version", &a.version},
                                                      {"git_revision", &a.git_revision},
                                                      {"executor", &a.executor},
                                                      {"device", &a.device},
                                                      {"host", &a.host}};
    for (const auto& name : attr_names(g)) {
      auto fixed = std::find_if(std::begin(strings), std::end(strings),
                                [&](const auto& s) { return name == s.first; });
      if (fixed != std::end(strings)) {
        *fixed->second = *string_attr(g, name);
      } else if (name == "seed") {
        a.seed = *number_attr<uint64_t>(g, name);
      } else if (name.starts_with("plugin.")) {
        a.plugins.emplace_back(name.substr(7), *string_attr(g, name));
      } else {
        a.extra.emplace_back(name, *string_attr(g, name));
      }
    }
    if (records) {
      r.records.requests = table<RequestRecord>(g, group, true);
      r.records.iterations = table<IterationRecord>(g, group, true);
      r.records.events = table<EventRecord>(g, group, true);
      r.records.batches = table<BatchLogRecord>(g, group, false);
    }
    r.has_batches = g.nameExists("batches");
    r.summary = summary(g, group);
    return r;
  }

  // The runs `groups` (each must be there), in that order; without their records when
  // `records` is false.
  std::vector<StoredRun> read(const std::vector<std::string>& groups, bool records) const {
    H5::H5File file;
    H5::Group runs = checked_root(file).openGroup("runs");
    std::vector<StoredRun> out;
    for (const auto& g : groups) {
      if (!runs.nameExists(g)) throw InputError(fmt::format("{} has no run /runs/{}", name_, g));
      out.push_back(run(runs, g, records));
    }
    return out;
  }

  // The root group of the file after the checks every reader makes (format, version,
  // status "complete"); `file` keeps it open.
  H5::Group checked_root(H5::H5File& file) const {
    file = H5::H5File(name_, H5F_ACC_RDONLY, H5::FileCreatPropList::DEFAULT, file_access());
    H5::Group root = file.openGroup("/");
    auto format = string_attr(root, "format");
    if (!format || *format != kResultsFormat)
      throw InputError(
          fmt::format("{} is not a lorasched results file (an HDF5 file without the root attribute "
                      "format = \"{}\")",
                      name_, kResultsFormat));
    auto version = number_attr<int64_t>(root, "format_version");
    if (!version || *version > kResultsFormatVersion || *version < 1)
      throw InputError(fmt::format(
          "{} has results format version {}; this lorasched reads version {}", name_,
          version ? fmt::to_string(*version) : std::string("(none)"), kResultsFormatVersion));
    auto status = string_attr(root, "status").value_or("(none)");
    if (status != "complete") {
      auto error = string_attr(root, "error");
      throw InputError(fmt::format(
          "{} is not a complete results file (status \"{}\"{}): the run was killed or failed; "
          "rerun it",
          name_, status, error ? ": " + *error : std::string()));
    }
    if (!root.nameExists("runs")) corrupt("no /runs group");
    return root;
  }

  std::vector<std::string> group_names(const H5::Group& runs) const {
    std::vector<std::string> groups;
    for (hsize_t i = 0; i < runs.getNumObjs(); ++i) {
      std::string name = runs.getObjnameByIdx(i);
      if (runs.childObjType(name) == H5O_TYPE_GROUP) groups.push_back(std::move(name));
    }
    std::sort(groups.begin(), groups.end());
    return groups;
  }

  Summary summary(const H5::Group& g, const std::string& group) const {
    if (!g.nameExists("summary")) corrupt(fmt::format("run {} has no summary group", group));
    H5::Group s = g.openGroup("summary");
    Summary out;
    RecordTable<Summary>::for_each([&](const FieldInfo& f, auto member) {
      using T = std::remove_reference_t<decltype(out.*member)>;
      if (auto v = number_attr<T>(s, f.name)) out.*member = *v;
    });
    return out;
  }

  std::vector<StoredRun> read() const {
    H5::H5File file;
    H5::Group runs = checked_root(file).openGroup("runs");
    std::vector<StoredRun> out;
    for (const auto& g : group_names(runs)) out.push_back(run(runs, g));
    return out;
  }

  ResultsHeader header() const {
    H5::H5File file;
    H5::Group root = checked_root(file);
    ResultsHeader h;
    if (auto text = string_attr(root, "experiment_file_toml")) {
      FileProvenance p;
      p.experiment_file_toml = *text;
      p.overrides = string_attr(root, "overrides").value_or("");
      p.build = string_attr(root, "build").value_or("");
      p.points = number_attr<int64_t>(root, "points").value_or(0);
      p.shard = string_attr(root, "shard").value_or("");
      h.provenance = p;
    }
    H5::Group runs = root.openGroup("runs");
    for (const auto& name : group_names(runs)) {
      H5::Group g = runs.openGroup(name);
      h.runs.emplace_back(name, string_attr(g, "label").value_or(""));
      h.summaries.push_back(summary(g, name));
    }
    return h;
  }

 private:
  std::string name_;
};

// " (status failed: <error>)" read from a .partial file, or "" if it cannot be read.
std::string partial_status(const std::string& name) {
  try {
    if (H5Fis_hdf5(name.c_str()) <= 0) return {};
    H5::H5File file(name, H5F_ACC_RDONLY, H5::FileCreatPropList::DEFAULT, file_access());
    H5::Group root = file.openGroup("/");
    Reader reader(name);
    auto status = reader.string_attr(root, "status");
    if (!status) return {};
    auto error = reader.string_attr(root, "error");
    return fmt::format(" (status {}{})", *status, error ? ": " + *error : std::string());
  } catch (...) {
    H5Eclear2(H5E_DEFAULT);
    return {};
  }
}

}  // namespace

namespace {

// The checks on the path that come before opening it (missing, .partial, not HDF5), then
// `read` on a Reader, HDF5 errors turned into InputError naming the file.
template <class F>
auto read_checked(const fs::path& path, F read) {
  H5::Exception::dontPrint();
  const std::string name = path.string();
  const std::string rerun = "the run was killed or failed; rerun it";
  std::error_code ec;
  if (ends_with(name, ".partial") && fs::exists(path, ec))
    throw InputError(
        fmt::format("{} is an incomplete run (.partial){}: {}", name, partial_status(name), rerun));
  if (!fs::exists(path, ec)) {
    const std::string partial = name + ".partial";
    if (fs::exists(partial, ec))
      throw InputError(fmt::format("{}: no such file, but {} is there: an incomplete run{}: {}",
                                   name, partial, partial_status(partial), rerun));
    throw InputError(fmt::format("{}: no such file", name));
  }
  if (!fs::is_regular_file(path, ec)) throw InputError(fmt::format("{}: not a file", name));
  if (H5Fis_hdf5(name.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw InputError(
        fmt::format("{} is not an HDF5 file (expected a lorasched results file)", name));
  }
  try {
    return read(Reader(name));
  } catch (const H5::Exception& e) {
    throw InputError(fmt::format("{}: cannot read the results file: {}", name, h5_detail(e)));
  }
}

}  // namespace

std::vector<StoredRun> read_results(const fs::path& path) {
  return read_checked(path, [](const Reader& r) { return r.read(); });
}

ResultsHeader read_results_header(const fs::path& path) {
  return read_checked(path, [](const Reader& r) { return r.header(); });
}

void ResultsWriter::copy_runs(const fs::path& source, const std::vector<std::string>& groups) {
  LORASCHED_CHECK(file_ != nullptr, "copy_runs on {} after commit() or fail()", path_.string());
  // The attributes and summary are read and written again; the datasets are copied as they
  // are stored (HDF5 object copy: compressed chunks, no re-encoding). Not the whole group
  // by H5Ocopy: Debian's HDF5 1.10 crashes copying attributes in dense storage with
  // variable-length strings (a run's, with its plugin and sweep attributes).
  const auto runs =
      read_checked(source, [&](const Reader& r) { return r.read(groups, /*records=*/false); });
  const std::string name = source.string();
  try {
    H5::H5File src(name, H5F_ACC_RDONLY, H5::FileCreatPropList::DEFAULT, file_access());
    H5::Group src_runs = src.openGroup("runs");
    for (const auto& r : runs) {
      check_run_names(r.group, r.attrs);
      H5::Group from = src_runs.openGroup(r.group);
      write_run_group(file_->h5, path_, r.group, r.attrs, r.summary, [&](const H5::Group& g) {
        for (const char* d : {"requests", "iterations", "events", "batches"}) {
          if (!from.nameExists(d)) continue;
          if (H5Ocopy(from.getId(), d, g.getId(), d, H5P_DEFAULT, H5P_DEFAULT) < 0) {
            H5Eclear2(H5E_DEFAULT);
            throw Error(ExitCode::runtime, fmt::format("{}: cannot copy /runs/{}/{} from {}",
                                                       partial_.string(), r.group, d, name));
          }
        }
      });
    }
  } catch (const H5::Exception& e) {
    throw Error(ExitCode::runtime, fmt::format("{}: cannot copy runs from {}: {}",
                                               partial_.string(), name, h5_detail(e)));
  }
}

}  // namespace lorasched
