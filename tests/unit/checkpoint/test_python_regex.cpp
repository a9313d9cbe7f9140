// PythonRegex (core/checkpoint/python_regex.hpp) against Python's own `re`: every case of
// tests/fixtures/python-re/cases.json (written by scripts/make-regex-cases.py with Python) must
// compile where Python compiles it and give re.fullmatch's and re.match's answer on every
// subject; where Python refuses a pattern, so must lorasched; the few patterns lorasched refuses
// on purpose are listed there with the reason.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/checkpoint/python_regex.hpp"

namespace lorasched::checkpoint {
namespace {

nlohmann::json cases() {
  std::ifstream in(std::string(LORASCHED_SOURCE_DIR) + "/tests/fixtures/python-re/cases.json");
  return nlohmann::json::parse(in);
}

bool contains(const nlohmann::json& list, const std::string& s) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

TEST(PythonRegex, AgreesWithPythonRe) {
  const auto doc = cases();
  const auto& subjects = doc.at("subjects");
  ASSERT_GT(doc.at("cases").size(), 100u);
  int compiled = 0, refused = 0;
  for (const auto& c : doc.at("cases")) {
    const std::string pattern = c.at("pattern");
    SCOPED_TRACE("pattern " + pattern);
    const bool python_ok = c.at("python") == "ok";
    const bool lorasched_refuses = c.value("lorasched", "") == "refuse";
    if (!python_ok || lorasched_refuses) {
      EXPECT_THROW(PythonRegex::compile(pattern), RegexError)
          << (python_ok ? c.value("why", "") : c.value("error", ""));
      ++refused;
      continue;
    }
    std::optional<PythonRegex> re;
    try {
      re.emplace(PythonRegex::compile(pattern));
    } catch (const RegexError& e) {
      ADD_FAILURE() << "refused: " << e.what();
      continue;
    }
    ++compiled;
    for (const auto& sj : subjects) {
      const std::string s = sj;
      EXPECT_EQ(re->fullmatch(s), contains(c.at("fullmatch"), s))
          << "re.fullmatch on '" << s << "' (PCRE2: " << re->translated() << ")";
      EXPECT_EQ(re->match(s), contains(c.at("match"), s))
          << "re.match on '" << s << "' (PCRE2: " << re->translated() << ")";
    }
  }
  EXPECT_GT(compiled, 60);
  EXPECT_GT(refused, 30);
}

TEST(PythonRegex, TranslatesWhatPcre2SpellsDifferently) {
  EXPECT_EQ(translate_python_regex(R"(down_proj\Z)"), R"(down_proj\z)");
  EXPECT_EQ(translate_python_regex(R"(\v[\v])"), R"(\x{0b}[\x{0b}])");
  EXPECT_EQ(translate_python_regex(R"(a{,2}b{,})"), R"(a{0,2}b{0,})");
  EXPECT_EQ(translate_python_regex(R"(a{x}{)"), R"(a\{x}\{)");
  EXPECT_EQ(translate_python_regex(R"((a)\1\012)"), R"((a)\g{1}\o{012})");
  EXPECT_EQ(translate_python_regex(R"([[:a:]])"), R"([\[:a:]])");
  EXPECT_EQ(translate_python_regex(R"((?x) a b # c)"), "ab");
  EXPECT_EQ(translate_python_regex(R"((?u:\w))"), R"((?:\w))");
}

TEST(PythonRegex, ErrorsGivePositionsInTheUsersText) {
  try {
    PythonRegex::compile("(.*\\.)?(q_proj(|)$", 8);  // the key "q_proj(|" inside PEFT's wrap
    ADD_FAILURE();
  } catch (const RegexError& e) {
    EXPECT_NE(std::string(e.what()).find("at position"), std::string::npos) << e.what();
  }
  try {
    PythonRegex::compile("ab\\e");
    ADD_FAILURE();
  } catch (const RegexError& e) {
    EXPECT_EQ(std::string(e.what()), "bad escape \\e at position 2");
  }
}

// A pattern that backtracks exponentially fails fast at the step limit instead of hanging (as
// std::regex did, and Python's re does).
TEST(PythonRegex, CatastrophicBacktrackingFailsFast) {
  const std::string name = "model.layers.10.self_attn.q_proj";
  for (const char* pattern : {"(.|.)*\\d", "(.*)*\\d", "(\\w|.)+\\d"}) {
    SCOPED_TRACE(pattern);
    const auto re = PythonRegex::compile(pattern);
    const auto start = std::chrono::steady_clock::now();
    try {
      (void)re.fullmatch(name);
      ADD_FAILURE() << "finished without reaching the step limit";
    } catch (const RegexError& e) {
      EXPECT_NE(std::string(e.what()).find("backtracking steps"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(seconds, 0.5);
  }
  // docs/hardening.md's old example: PCRE2 sees that no 'X' occurs and answers at once.
  EXPECT_FALSE(PythonRegex::compile("(.|.)*X").fullmatch(name));
}

}  // namespace
}  // namespace lorasched::checkpoint
