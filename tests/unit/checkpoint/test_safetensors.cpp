// The safetensors reader and writer: fp16/bf16 conversions, round trips, and a table of corrupt
// files, each of which must be an InputError naming the file (and the tensor).
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/checkpoint/safetensors.hpp"
#include "core/common/error.hpp"
#include "tests/unit/checkpoint/test_util.hpp"

namespace lorasched::checkpoint {
namespace {

using test::expect_input_error;
using test::raw_safetensors;
using test::TempDir;
using test::write_file;


TEST(Safetensors, WritesAndReadsBack) {
  TempDir dir;
  const std::vector<float> v = {1.0f, -2.5f, 3.25f, 0.1f, 65504.0f, 1e-7f};
  write_safetensors(dir / "a.safetensors",
                    {{"f32", {2, 3}, v, Dtype::F32},
                     {"f16", {3, 2}, v, Dtype::F16},
                     {"bf16", {6}, v, Dtype::BF16},
                     {"empty", {0, 4}, {}, Dtype::F32}},
                    {{"format", "pt"}});
  const auto f = SafetensorsFile::open(dir / "a.safetensors");
  ASSERT_EQ(f.tensors().size(), 4u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.find("nope"), nullptr);
  ASSERT_NE(f.find("f16"), nullptr);
  EXPECT_EQ(f.find("f16")->dtype, Dtype::F16);
  EXPECT_EQ(f.find("f16")->shape, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(f.read_f32("f32", {2, 3}), v);
  const auto h = f.read_f32("f16", {3, 2});
  const auto b = f.read_f32("bf16", {6});
  for (size_t i = 0; i < v.size(); ++i) {
    EXPECT_EQ(h[i], f16_to_f32(f32_to_f16(v[i])));
    EXPECT_EQ(b[i], bf16_to_f32(f32_to_bf16(v[i])));
  }
  EXPECT_TRUE(f.read_f32("empty", {0, 4}).empty());
  // Header padded to 8 bytes, data follows.
  const std::string bytes = test::read_file(dir / "a.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + n + 6 * 4 + 6 * 2 + 6 * 2);
}

TEST(Safetensors, ReadErrorsNameFileAndTensor) {
  TempDir dir;
  const auto path = dir / "x.safetensors";
  write_safetensors(path, {{"w", {2, 3}, {1, 2, 3, 4, 5, 6}, Dtype::F32}});
  write_file(dir / "i64.safetensors",
             raw_safetensors(R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})",
                             std::string(16, '\0')));
  const auto f = SafetensorsFile::open(path);
  expect_input_error(
      [&] {
        f.read_f32("w", {3, 2});
      },
      {path.string(), "'w'", "expected shape [3, 2], found [2, 3]"});
  expect_input_error([&] { f.read_f32("w", {6}); }, {"expected shape [6], found [2, 3]"});
  expect_input_error([&] { f.read_f32("v", {2, 3}); }, {path.string(), "'v'", "not found"});
  const auto g = SafetensorsFile::open(dir / "i64.safetensors");
  EXPECT_EQ(g.find("ids")->dtype, Dtype::I64);
  expect_input_error([&] { g.read_f32("ids", {2}); },
                     {"i64.safetensors", "'ids'", "dtype I64 cannot be read as floats"});
}

// One corrupt file: its bytes, and what the message must say (besides the file name).
struct Corrupt {
  const char* name;
  std::string bytes;
  std::vector<std::string> needles;
};

std::string entry(const std::string& name, const std::string& body) {
  return "\"" + name + "\":{" + body + "}";
}

std::vector<Corrupt> corrupt_files() {
  const std::string d16(16, '\0');
  std::string valid;
  {
    TempDir dir;
    write_safetensors(dir / "v", {{"w", {2, 2}, {1, 2, 3, 4}, Dtype::F32}});
    valid = test::read_file(dir / "v");
  }
  std::string len_beyond = valid;
  const uint64_t big = valid.size();  // header length = file size: beyond the end
  std::memcpy(len_beyond.data(), &big, 8);
  std::string len_huge = valid;
  const uint64_t huge = ~0ull;
  std::memcpy(len_huge.data(), &huge, 8);
  const std::string w = R"("dtype":"F32","shape":[2,2],"data_offsets":[0,16])";
  return {
      {"empty file", "", {"shorter than the 8-byte header length"}},
      {"truncated in the length", valid.substr(0, 5), {"5 bytes", "truncated"}},
      {"truncated in the header", valid.substr(0, 20), {"beyond the end of the file"}},
      {"truncated in the data",
       valid.substr(0, valid.size() - 4),
       {"'w'", "end beyond the data buffer (12 bytes"}},
      {"header length beyond file", len_beyond, {"header length", "beyond the end of the file"}},
      {"header length 2^64-1", len_huge, {"beyond the end of the file"}},
      {"bad json", raw_safetensors(R"({"w":{"dtype":"F32",)", d16), {"header is not valid JSON"}},
      {"json garbage", raw_safetensors("\x01\x02garbage", d16), {"header is not valid JSON"}},
      {"header not an object",
       raw_safetensors("[1,2,3]", d16),
       {"header is not a JSON object (it is array)"}},
      {"entry not an object", raw_safetensors(R"({"w":5})", d16), {"'w'", "not a JSON object"}},
      {"missing dtype",
       raw_safetensors("{" + entry("w", R"("shape":[2,2],"data_offsets":[0,16])") + "}", d16),
       {"'w'", "missing dtype"}},
      {"missing shape",
       raw_safetensors("{" + entry("w", R"("dtype":"F32","data_offsets":[0,16])") + "}", d16),
       {"'w'", "missing shape"}},
      {"missing data_offsets",
       raw_safetensors("{" + entry("w", R"("dtype":"F32","shape":[2,2])") + "}", d16),
       {"'w'", "missing data_offsets"}},
      {"dtype not a string",
       raw_safetensors("{" + entry("w", R"("dtype":7,"shape":[2,2],"data_offsets":[0,16])") + "}",
                       d16),
       {"'w'", "dtype is not a string"}},
      {"unknown dtype",
       raw_safetensors(
           "{" + entry("w", R"("dtype":"F33","shape":[2,2],"data_offsets":[0,16])") + "}", d16),
       {"'w'", "unknown dtype 'F33'"}},
      {"shape not an array",
       raw_safetensors("{" + entry("w", R"("dtype":"F32","shape":4,"data_offsets":[0,16])") + "}",
                       d16),
       {"'w'", "shape is not an array"}},
      {"negative dimension",
       raw_safetensors(
           "{" + entry("w", R"("dtype":"F32","shape":[-2,-2],"data_offsets":[0,16])") + "}", d16),
       {"'w'", "negative"}},
      {"non-integer dimension",
       raw_safetensors(
           "{" + entry("w", R"("dtype":"F32","shape":[2.5,2],"data_offsets":[0,16])") + "}", d16),
       {"'w'", "not an integer"}},
      {"string dimension",
       raw_safetensors(
           "{" + entry("w", R"("dtype":"F32","shape":["2",2],"data_offsets":[0,16])") + "}", d16),
       {"'w'", "not a number"}},
      {"shape product overflows",
       raw_safetensors(
           "{" +
               entry("w",
                     R"("dtype":"F32","shape":[4294967296,4294967296,2],"data_offsets":[0,16])") +
               "}",
           d16),
       {"'w'", "overflows"}},
      {"bytes overflow",
       raw_safetensors(
           "{" +
               entry("w", R"("dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,16])") +
               "}",
           d16),
       {"'w'", "overflows"}},
      {"dimension beyond int64",
       raw_safetensors(
           "{" +
               entry("w", R"("dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,16])") +
               "}",
           d16),
       {"'w'", "overflows"}},
      {"data_offsets wrong length",
       raw_safetensors("{" + entry("w", R"("dtype":"F32","shape":[2,2],"data_offsets":[16])") + "}",
                       d16),
       {"'w'", "data_offsets is not an array of two integers"}},
      {"data_offsets negative",
       raw_safetensors(
           "{" + entry("w", R"("dtype":"F32","shape":[2,2],"data_offsets":[-16,0])") + "}", d16),
       {"'w'", "data_offsets[0] is negative"}},
      {"begin > end",
       raw_safetensors("{" + entry("w", R"("dtype":"F32","shape":[0],"data_offsets":[16,0])") + "}",
                       d16),
       {"'w'", "begin > end"}},
      {"end beyond buffer",
       raw_safetensors(
           "{" + entry("w", R"("dtype":"F32","shape":[2,2],"data_offsets":[8,24])") + "}", d16),
       {"'w'", "end beyond the data buffer (16 bytes"}},
      {"shape/bytes mismatch",
       raw_safetensors(
           "{" + entry("w", R"("dtype":"F32","shape":[2,3],"data_offsets":[0,16])") + "}", d16),
       {"'w'", "shape [2, 3] of F32 needs 24 bytes but data_offsets [0, 16] hold 16"}},
      {"sub-byte dtype",
       raw_safetensors("{" + entry("w", R"("dtype":"F4","shape":[3],"data_offsets":[0,1])") + "}",
                       d16),
       {"'w'", "not a whole number of bytes"}},
      {"overlapping tensors",
       raw_safetensors("{" + entry("a", R"("dtype":"F32","shape":[2],"data_offsets":[0,8])") + "," +
                           entry("b", R"("dtype":"F32","shape":[2],"data_offsets":[4,12])") + "}",
                       d16),
       {"'b'", "overlap tensor 'a' at [0, 8]"}},
      {"tensor inside another",
       raw_safetensors("{" + entry("a", R"("dtype":"F32","shape":[4],"data_offsets":[0,16])") +
                           "," + entry("b", R"("dtype":"F32","shape":[1],"data_offsets":[4,8])") +
                           "," + entry("c", R"("dtype":"F32","shape":[1],"data_offsets":[8,12])") +
                           "}",
                       d16),
       {"'b'", "overlap tensor 'a'"}},
      {"duplicate names",
       raw_safetensors("{" + entry("w", w) + "," + entry("w", w) + "}", d16),
       {"duplicate tensor name 'w'"}},
      {"duplicate key in an entry",
       raw_safetensors("{" + entry("w", w + R"(,"dtype":"F16")") + "}", d16),
       {"'w'", "duplicate key 'dtype'"}},
      {"metadata not an object",
       raw_safetensors(R"({"__metadata__":[1]})", ""),
       {"__metadata__ is not a JSON object"}},
      {"metadata value not a string",
       raw_safetensors(R"({"__metadata__":{"k":1}})", ""),
       {"__metadata__ value of 'k' is not a string"}},
      {"deeply nested shape",
       raw_safetensors(R"({"w":{"dtype":"F32","shape":)" + std::string(100000, '[') +
                           std::string(100000, ']') + "}}",
                       ""),
       {"header nests deeper than 32 levels"}},
      {"control characters in a name",
       raw_safetensors("{" + entry("a\\nb", R"("dtype":"X","shape":[],"data_offsets":[0,0])") + "}",
                       ""),
       {"'a\\x0ab'", "unknown dtype"}},
  };
}

TEST(Safetensors, CorruptFilesAreInputErrors) {
  TempDir dir;
  int i = 0;
  for (const auto& c : corrupt_files()) {
    SCOPED_TRACE(c.name);
    const auto path = dir / ("corrupt-" + std::to_string(i++) + ".safetensors");
    write_file(path, c.bytes);
    auto needles = c.needles;
    needles.push_back(path.string());
    expect_input_error([&] { SafetensorsFile::open(path); }, needles);
  }
}

TEST(Safetensors, MissingFileAndFolder) {
  TempDir dir;
  expect_input_error([&] { SafetensorsFile::open(dir / "nope.safetensors"); },
                     {"nope.safetensors", "cannot open"});
  expect_input_error([&] { SafetensorsFile::open(dir.path()); }, {"not a regular file"});
}

TEST(Safetensors, ValidEdgeCases) {
  TempDir dir;
  // Empty header object, zero-size tensors sharing an offset, a gap, scalars, metadata only.
  const std::string d(12, '\0');
  write_file(dir / "a", raw_safetensors("{}", ""));
  EXPECT_TRUE(SafetensorsFile::open(dir / "a").tensors().empty());
  write_file(dir / "b",
             raw_safetensors(R"({"z1":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},)"
                             R"("z2":{"dtype":"F16","shape":[3,0],"data_offsets":[4,4]},)"
                             R"("s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
                             R"("t":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]}})",
                             d));
  const auto f = SafetensorsFile::open(dir / "b");
  EXPECT_EQ(f.tensors().size(), 4u);
  EXPECT_EQ(f.read_f32("s", std::span<const int64_t>()).size(), 1u);
  EXPECT_EQ(f.read_f32("t", {2}), (std::vector<float>{0.0f, 0.0f}));
}

// Every truncation and many random byte edits of a valid file: an InputError or a valid file,
// never a crash (run under ASan/UBSan in the sanitizer build).
TEST(Safetensors, MutatedFilesNeverCrash) {
  TempDir dir;
  write_safetensors(dir / "v", {{"a", {2, 3}, {1, 2, 3, 4, 5, 6}, Dtype::F16},
                                {"b", {4}, {1, 2, 3, 4}, Dtype::F32},
                                {"c", {1, 2}, {7, 8}, Dtype::BF16}});
  const std::string valid = test::read_file(dir / "v");
  auto try_open = [&](const std::string& bytes) {
    write_file(dir / "m", bytes);
    try {
      const auto f = SafetensorsFile::open(dir / "m");
      for (const auto& t : f.tensors()) {
        try {
          (void)f.read_f32(t);
        } catch (const InputError&) {
        }
      }
    } catch (const InputError&) {
    }
  };
  for (size_t n = 0; n < valid.size(); ++n) try_open(valid.substr(0, n));
  std::mt19937 rng(7);
  for (int i = 0; i < 600; ++i) {
    std::string m = valid;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % m.size();
      m[pos] = static_cast<char>(rng() % 2 ? rng() : "0123456789[]{},:\"-.e"[rng() % 20]);
    }
    try_open(m);
  }
}

}  // namespace
}  // namespace lorasched::checkpoint
