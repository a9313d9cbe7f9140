#include "core/checkpoint/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <tuple>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/checkpoint/json_util.hpp"
#include "core/common/error.hpp"

static_assert(std::endian::native == std::endian::little,
              "the safetensors reader assumes a little-endian host");

namespace lorasched::checkpoint {

namespace {

struct DtypeEntry {
  Dtype dtype;
  std::string_view name;
  int bits;
};
constexpr std::array<DtypeEntry, 20> kDtypes = {{
    {Dtype::BOOL, "BOOL", 8},       {Dtype::U8, "U8", 8},           {Dtype::I8, "I8", 8},
    {Dtype::F8_E5M2, "F8_E5M2", 8}, {Dtype::F8_E4M3, "F8_E4M3", 8}, {Dtype::F8_E8M0, "F8_E8M0", 8},
    {Dtype::I16, "I16", 16},        {Dtype::U16, "U16", 16},        {Dtype::F16, "F16", 16},
    {Dtype::BF16, "BF16", 16},      {Dtype::I32, "I32", 32},        {Dtype::U32, "U32", 32},
    {Dtype::F32, "F32", 32},        {Dtype::F64, "F64", 64},        {Dtype::C64, "C64", 64},
    {Dtype::I64, "I64", 64},        {Dtype::U64, "U64", 64},        {Dtype::F4, "F4", 4},
    {Dtype::F6_E2M3, "F6_E2M3", 6}, {Dtype::F6_E3M2, "F6_E3M2", 6},
}};

// Header sizes above this are refused (the reference implementation's limit).
constexpr uint64_t kMaxHeaderSize = 100u * 1000u * 1000u;

std::string where(const std::filesystem::path& path) { return path.string(); }

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& msg) {
  throw InputError(fmt::format("{}: {}", where(path), msg));
}
[[noreturn]] void fail_tensor(const std::filesystem::path& path, std::string_view tensor,
                              const std::string& msg) {
  throw InputError(fmt::format("{}: tensor {}: {}", where(path), quote_name(tensor), msg));
}

// Header values in messages are cut shorter than config values: a header line also names the
// file and the tensor.
constexpr size_t kBrief = 60;

// Headers nest three levels deep; anything much deeper is refused while parsing (the JSON
// library's printer and comparisons recurse).
constexpr size_t kMaxDepth = 32;

// A JSON number that must be a non-negative integer; `what` names it for the message.
uint64_t as_u64(const std::filesystem::path& path, std::string_view tensor, const char* what,
                const nlohmann::json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) fail_tensor(path, tensor, fmt::format("{} is negative", what));
  if (v.is_number_float())
    fail_tensor(path, tensor,
                fmt::format("{} is not an integer ({})", what, detail::brief(v, kBrief)));
  fail_tensor(path, tensor, fmt::format("{} is not a number ({})", what, detail::brief(v, kBrief)));
}

}  // namespace

std::string_view dtype_name(Dtype d) {
  for (const auto& e : kDtypes)
    if (e.dtype == d) return e.name;
  return "?";
}

int dtype_bits(Dtype d) {
  for (const auto& e : kDtypes)
    if (e.dtype == d) return e.bits;
  return 0;
}

bool parse_dtype(std::string_view s, Dtype& out) {
  for (const auto& e : kDtypes)
    if (e.name == s) {
      out = e.dtype;
      return true;
    }
  return false;
}

uint64_t TensorInfo::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

std::string format_shape(std::span<const int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += fmt::format("{}{}", i ? ", " : "", shape[i]);
  return s + "]";
}

std::string quote_name(std::string_view name) {
  std::string s = "'";
  for (char c : name) {
    auto u = static_cast<unsigned char>(c);
    if (c == '\'' || c == '\\')
      s += fmt::format("\\{}", c);
    else if (u < 0x20 || u == 0x7f)
      s += fmt::format("\\x{:02x}", u);
    else
      s += c;
  }
  return s + "'";
}

// ---- the mapping ------------------------------------------------------------------------------

struct SafetensorsFile::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  Mapping(void* a, size_t s) : addr(a), size(s) {}
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (addr != nullptr) ::munmap(addr, size);
  }
};

SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;
SafetensorsFile::~SafetensorsFile() = default;

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  SafetensorsFile f;
  f.path_ = path;

  // Map the file.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, fmt::format("cannot open: {}", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail(path, fmt::format("cannot stat: {}", std::strerror(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, "not a regular file");
  }
  const auto file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    fail(path, fmt::format("not a safetensors file: {} bytes, shorter than the 8-byte header "
                           "length (truncated?)",
                           file_size));
  }
  void* addr = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);
  if (addr == MAP_FAILED) fail(path, fmt::format("cannot map: {}", std::strerror(map_err)));
  f.map_ = std::make_unique<Mapping>(addr, file_size);
  const auto* base = static_cast<const std::byte*>(addr);

  // Header length and header.
  uint64_t n = 0;
  std::memcpy(&n, base, 8);
  if (n > file_size - 8)
    fail(path, fmt::format("header length {} is beyond the end of the file ({} bytes; "
                           "truncated or not a safetensors file)",
                           n, file_size));
  if (n > kMaxHeaderSize)
    fail(path, fmt::format("header length {} exceeds the limit of {} bytes", n, kMaxHeaderSize));
  f.data_ = base + 8 + n;
  f.data_size_ = file_size - 8 - n;
  const char* hbegin = reinterpret_cast<const char*>(base + 8);
  const char* hend = hbegin + n;

  auto parsed =
      detail::parse_strict<nlohmann::json>(std::string_view(hbegin, hend - hbegin), kMaxDepth);
  if (!parsed.error.empty()) fail(path, fmt::format("header is not valid JSON: {}", parsed.error));
  if (parsed.too_deep) fail(path, fmt::format("header nests deeper than {} levels", kMaxDepth));
  const nlohmann::json& header = parsed.value;
  if (!header.is_object())
    fail(path, fmt::format("header is not a JSON object (it is {})", header.type_name()));
  if (parsed.duplicate) {
    if (parsed.duplicate->inside.empty())
      fail(path, fmt::format("duplicate tensor name {}", quote_name(parsed.duplicate->key)));
    fail_tensor(path, parsed.duplicate->inside,
                fmt::format("duplicate key {}", quote_name(parsed.duplicate->key)));
  }

  // Entries.
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail(path, "__metadata__ is not a JSON object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          fail(path, fmt::format("__metadata__ value of {} is not a string", quote_name(m.key())));
        f.metadata_.emplace(m.key(), m.value().get<std::string>());
      }
      continue;
    }
    if (!v.is_object()) fail_tensor(path, name, "entry is not a JSON object");
    TensorInfo t;
    t.name = name;

    auto d = v.find("dtype");
    if (d == v.end()) fail_tensor(path, name, "missing dtype");
    if (!d->is_string()) fail_tensor(path, name, "dtype is not a string");
    const auto& dstr = d->get_ref<const std::string&>();
    if (!parse_dtype(dstr, t.dtype))
      fail_tensor(path, name, fmt::format("unknown dtype {}", quote_name(dstr)));

    auto s = v.find("shape");
    if (s == v.end()) fail_tensor(path, name, "missing shape");
    if (!s->is_array()) fail_tensor(path, name, "shape is not an array");
    uint64_t numel = 1;
    for (const auto& dim : *s) {
      const uint64_t x = as_u64(path, name, "a shape dimension", dim);
      if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          __builtin_mul_overflow(numel, x, &numel))
        fail_tensor(path, name, fmt::format("shape {} overflows", detail::brief(*s, kBrief)));
      t.shape.push_back(static_cast<int64_t>(x));
    }
    uint64_t bits = 0;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_bits(t.dtype)), &bits))
      fail_tensor(path, name, fmt::format("shape {} overflows", format_shape(t.shape)));
    if (bits % 8 != 0)
      fail_tensor(path, name,
                  fmt::format("{} elements of {} are not a whole number of bytes", numel, dstr));
    const uint64_t nbytes = bits / 8;

    auto o = v.find("data_offsets");
    if (o == v.end()) fail_tensor(path, name, "missing data_offsets");
    if (!o->is_array() || o->size() != 2)
      fail_tensor(path, name, "data_offsets is not an array of two integers");
    t.begin = as_u64(path, name, "data_offsets[0]", (*o)[0]);
    t.end = as_u64(path, name, "data_offsets[1]", (*o)[1]);
    if (t.begin > t.end)
      fail_tensor(path, name, fmt::format("data_offsets [{}, {}]: begin > end", t.begin, t.end));
    if (t.end > f.data_size_)
      fail_tensor(path, name,
                  fmt::format("data_offsets [{}, {}] end beyond the data buffer ({} bytes; "
                              "truncated file?)",
                              t.begin, t.end, f.data_size_));
    if (t.end - t.begin != nbytes)
      fail_tensor(
          path, name,
          fmt::format("shape {} of {} needs {} bytes but data_offsets [{}, {}] hold {}",
                      format_shape(t.shape), dstr, nbytes, t.begin, t.end, t.end - t.begin));
    f.tensors_.push_back(std::move(t));
  }

  // Overlaps: sort by offset; every non-empty tensor must start at or after the end of all
  // earlier ones.
  std::sort(f.tensors_.begin(), f.tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  const TensorInfo* last = nullptr;
  for (const auto& t : f.tensors_) {
    if (t.begin == t.end) continue;
    if (last != nullptr && t.begin < last->end)
      fail_tensor(path, t.name,
                  fmt::format("data_offsets [{}, {}] overlap tensor {} at [{}, {}]", t.begin, t.end,
                              quote_name(last->name), last->begin, last->end));
    if (last == nullptr || t.end > last->end) last = &t;
  }
  for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_.emplace(f.tensors_[i].name, i);
  return f;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const std::byte> SafetensorsFile::bytes(const TensorInfo& info) const {
  return {data_ + info.begin, static_cast<size_t>(info.end - info.begin)};
}

std::vector<float> SafetensorsFile::read_f32(const TensorInfo& info) const {
  if (info.dtype != Dtype::F32 && info.dtype != Dtype::F16 && info.dtype != Dtype::BF16)
    fail_tensor(path_, info.name,
                fmt::format("dtype {} cannot be read as floats (F32, F16 or BF16 expected)",
                            dtype_name(info.dtype)));
  const auto raw = bytes(info);
  const size_t n = static_cast<size_t>(info.numel());
  std::vector<float> out(n);
  switch (info.dtype) {
    case Dtype::F32:
      if (n != 0) std::memcpy(out.data(), raw.data(), n * sizeof(float));
      break;
    case Dtype::F16:
    case Dtype::BF16: {
      const bool half = info.dtype == Dtype::F16;
      for (size_t i = 0; i < n; ++i) {
        uint16_t h = 0;
        std::memcpy(&h, raw.data() + 2 * i, 2);
        out[i] = half ? f16_to_f32(h) : bf16_to_f32(h);
      }
      break;
    }
    default:
      break;
  }
  return out;
}

std::vector<float> SafetensorsFile::read_f32(std::string_view name,
                                             std::span<const int64_t> expected_shape) const {
  const TensorInfo* info = find(name);
  if (info == nullptr) fail_tensor(path_, name, "not found");
  if (!std::equal(info->shape.begin(), info->shape.end(), expected_shape.begin(),
                  expected_shape.end()))
    fail_tensor(path_, name,
                fmt::format("expected shape {}, found {}", format_shape(expected_shape),
                            format_shape(info->shape)));
  return read_f32(*info);
}

void require_finite(std::span<const float> values, const std::filesystem::path& path,
                    std::string_view tensor) {
  for (size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i]))
      fail_tensor(path, tensor,
                  fmt::format("element {} of {} is {}: model and adapter weights must be finite", i,
                              values.size(), values[i]));
}

// ---- writer -----------------------------------------------------------------------------------

std::string encode_safetensors(const std::vector<TensorToWrite>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string data;
  std::set<std::string_view> names;
  for (const auto& t : tensors) {
    if (!names.insert(t.name).second)
      throw InputError(
          fmt::format("write_safetensors: duplicate tensor name {}", quote_name(t.name)));
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0)
        throw InputError(
            fmt::format("write_safetensors: tensor {}: negative dimension", quote_name(t.name)));
      numel *= static_cast<uint64_t>(d);
    }
    if (numel != t.values.size())
      throw InputError(fmt::format("write_safetensors: tensor {}: shape {} but {} values",
                                   quote_name(t.name), format_shape(t.shape), t.values.size()));
    const size_t begin = data.size();
    switch (t.dtype) {
      case Dtype::F32:
        data.append(reinterpret_cast<const char*>(t.values.data()), t.values.size() * 4);
        break;
      case Dtype::F16:
      case Dtype::BF16:
        for (float v : t.values) {
          const uint16_t h = t.dtype == Dtype::F16 ? f32_to_f16(v) : f32_to_bf16(v);
          data.append(reinterpret_cast<const char*>(&h), 2);
        }
        break;
      default:
        throw InputError(fmt::format("write_safetensors: tensor {}: dtype {} not supported",
                                     quote_name(t.name), dtype_name(t.dtype)));
    }
    header[t.name] = {
        {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {begin, data.size()}}};
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  const uint64_t n = h.size();
  std::memcpy(out.data(), &n, 8);
  out += h;
  out += data;
  return out;
}

void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string bytes = encode_safetensors(tensors, metadata);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) throw InputError(fmt::format("{}: cannot write", path.string()));
}

}  // namespace lorasched::checkpoint
