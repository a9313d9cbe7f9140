// docs/results-format.md against the field tables of core/metrics/records.hpp: every field of
// every dataset and of the summary is documented, in order, with its type and unit, nothing
// is documented that does not exist, and the enum tables list exactly the enums' values.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "core/metrics/fields.hpp"

namespace lorasched {
namespace {

const char* const kDoc = LORASCHED_SOURCE_DIR "/docs/results-format.md";

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t");
  const auto e = s.find_last_not_of(" \t");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

std::vector<std::string> cells(const std::string& row) {
  std::vector<std::string> out;
  std::string cur;
  // Split on '|' outside backticks (a cell may show `a|b`).
  bool code = false;
  for (char c : row) {
    if (c == '`') code = !code;
    if (c == '|' && !code) {
      out.push_back(trim(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  // "| a | b |": drop the empty cells before the first and after the last bar.
  if (!out.empty()) out.erase(out.begin());
  return out;
}

std::vector<std::string> code_spans(const std::string& text) {
  std::vector<std::string> out;
  static const std::regex span("`([^`]+)`");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), span); it != std::sregex_iterator();
       ++it)
    out.push_back((*it)[1]);
  return out;
}

struct DocTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};

// The doc as sections: heading line -> the tables under it (until the next heading of any
// level), each with its header row and its body rows.
std::map<std::string, std::vector<DocTable>> read_doc() {
  std::ifstream in(kDoc);
  EXPECT_TRUE(in.good()) << kDoc;
  std::map<std::string, std::vector<DocTable>> sections;
  std::string heading, line;
  bool in_table = false, in_fence = false;
  while (std::getline(in, line)) {
    if (line.starts_with("```")) in_fence = !in_fence;
    if (in_fence) continue;
    if (line.starts_with("#")) {
      heading = line;
      in_table = false;
      continue;
    }
    if (!line.starts_with("|")) {
      in_table = false;
      continue;
    }
    auto c = cells(line);
    if (!in_table) {
      sections[heading].push_back({c, {}});
      in_table = true;
    } else if (!c.empty() && c[0].starts_with("---")) {
      continue;
    } else {
      sections[heading].back().rows.push_back(c);
    }
  }
  return sections;
}

// The tables under the heading that starts with `prefix`, whose header's first cell is `first`.
const DocTable* find_table(const std::map<std::string, std::vector<DocTable>>& doc,
                           const std::string& prefix, const std::string& first) {
  for (const auto& [heading, tables] : doc) {
    if (!heading.starts_with(prefix)) continue;
    for (const auto& t : tables)
      if (!t.header.empty() && t.header[0] == first) return &t;
  }
  return nullptr;
}

size_t column(const DocTable& t, const std::string& name) {
  for (size_t i = 0; i < t.header.size(); ++i)
    if (t.header[i] == name) return i;
  ADD_FAILURE() << "table without a '" << name << "' column";
  return 0;
}

// The unit as the doc writes it: wall-clock fields say so.
std::string doc_unit(const FieldInfo& f) {
  const std::string unit = f.unit;
  if (f.clock == FieldClock::deterministic) return unit;
  return unit.empty() ? "wall clock" : unit + ", wall clock";
}

template <class Record>
void check_fields(const std::map<std::string, std::vector<DocTable>>& doc,
                  const std::string& heading) {
  const std::string section = std::string("section \"") + heading + "\"";
  const DocTable* t = find_table(doc, heading, "field");
  ASSERT_NE(t, nullptr) << kDoc << ": no table with a 'field' column under " << section;
  const size_t type_col = column(*t, "type"), unit_col = column(*t, "unit");
  // Documented (name, type, unit), in the doc's order; a row may name several fields.
  struct Documented {
    std::string name, type, unit;
  };
  std::vector<Documented> documented;
  for (const auto& row : t->rows) {
    ASSERT_GT(row.size(), std::max(type_col, unit_col)) << section;
    for (const auto& name : code_spans(row[0]))
      documented.push_back({name, row[type_col], row[unit_col]});
  }
  const auto& fields = RecordTable<Record>::fields;
  for (const auto& f : fields) {
    auto d = std::find_if(documented.begin(), documented.end(),
                          [&](const Documented& x) { return x.name == f.name; });
    if (d == documented.end()) {
      ADD_FAILURE() << kDoc << " " << section << " misses the field `" << f.name << "` ("
                    << field_type_name(f) << ")";
      continue;
    }
    EXPECT_EQ(d->type, field_type_name(f)) << section << ", field " << f.name << ": type";
    EXPECT_EQ(d->unit, doc_unit(f)) << section << ", field " << f.name << ": unit";
  }
  for (const auto& d : documented) {
    const bool exists = std::any_of(fields.begin(), fields.end(),
                                    [&](const FieldInfo& f) { return d.name == f.name; });
    EXPECT_TRUE(exists) << kDoc << " " << section << " lists `" << d.name
                        << "`, which is not a field of " << RecordTable<Record>::dataset;
  }
  if (documented.size() == fields.size()) {
    for (size_t i = 0; i < fields.size(); ++i)
      EXPECT_EQ(documented[i].name, fields[i].name)
          << section << ": fields documented out of file order at position " << i;
  }
}

void check_enum(const std::map<std::string, std::vector<DocTable>>& doc, FieldEnum e) {
  const std::string name = enum_type_name(e);
  const DocTable* t = nullptr;
  for (const auto& [heading, tables] : doc)
    for (const auto& table : tables)
      if (!table.header.empty() && table.header[0] == "value" && table.header.size() >= 2 &&
          table.header[1] == "`" + name + "`")
        t = &table;
  ASSERT_NE(t, nullptr) << kDoc << ": no table | value | `" << name << "` | for the enum " << name;
  const auto names = enum_names(e);
  ASSERT_EQ(t->rows.size(), names.size()) << "enum " << name << ": documented values";
  for (size_t i = 0; i < names.size(); ++i) {
    ASSERT_GE(t->rows[i].size(), 2u);
    EXPECT_EQ(t->rows[i][0], std::to_string(i)) << "enum " << name << " row " << i;
    EXPECT_EQ(t->rows[i][1], std::string("`") + names[i] + "`") << "enum " << name << " row " << i;
  }
}

TEST(ResultsFormatDoc, ListsEveryFieldWithItsTypeAndUnit) {
  const auto doc = read_doc();
  check_fields<RequestRecord>(doc, "## `requests`");
  check_fields<IterationRecord>(doc, "## `iterations`");
  check_fields<EventRecord>(doc, "## `events`");
  check_fields<BatchLogRecord>(doc, "## `batches`");
  check_fields<Summary>(doc, "## `summary`");
}

TEST(ResultsFormatDoc, ListsEveryEnumValue) {
  const auto doc = read_doc();
  check_enum(doc, FieldEnum::status);
  check_enum(doc, FieldEnum::mode);
  check_enum(doc, FieldEnum::kind);
}

// The check itself: a missing, an extra and a mistyped field are each reported.
TEST(ResultsFormatDoc, TheCheckCatchesMissingExtraAndMistypedFields) {
  std::map<std::string, std::vector<DocTable>> doc;
  DocTable t{{"field", "type", "unit", "meaning"}, {}};
  for (const auto& f : RecordTable<BatchLogRecord>::fields)
    t.rows.push_back({std::string("`") + f.name + "`", field_type_name(f), doc_unit(f), "x"});
  doc["## `batches`"].push_back(t);
  check_fields<BatchLogRecord>(doc, "## `batches`");  // as documented: no failure

  auto missing = t;
  missing.rows.pop_back();
  doc["## `batches`"] = {missing};
  EXPECT_NONFATAL_FAILURE(check_fields<BatchLogRecord>(doc, "## `batches`"),
                          "misses the field `position`");
  auto extra = t;
  extra.rows.push_back({"`slot`", "int32", "", "x"});
  doc["## `batches`"] = {extra};
  EXPECT_NONFATAL_FAILURE(check_fields<BatchLogRecord>(doc, "## `batches`"),
                          "lists `slot`, which is not a field of batches");
  auto typed = t;
  typed.rows[0][1] = "int32";
  doc["## `batches`"] = {typed};
  EXPECT_NONFATAL_FAILURE(check_fields<BatchLogRecord>(doc, "## `batches`"), "field iteration");
}

}  // namespace
}  // namespace lorasched
