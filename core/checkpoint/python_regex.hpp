// Python `re` patterns, as PEFT's adapter configs hold them (target_modules / exclude_modules as
// a string, rank_pattern and alpha_pattern keys), run by PCRE2 with a step limit.
//
// PEFT matches these with Python's re.fullmatch / re.match, so they are written in Python's
// syntax (3.11's `re`, plus 3.14's `\z`). PCRE2 shares most of it; the differences are
// translated before compiling:
//   \Z (Python: end of string only)      -> \z   (PCRE2's \Z also matches before a final \n)
//   \v (Python: the character \x0b)      -> \x{0b} (PCRE2's \v is a class of vertical spaces)
//   \uXXXX, \UXXXXXXXX, \xXX             -> \x{...}
//   octal \0, \012, \101; backrefs \1    -> \o{...}; \g{1} (PCRE2 reads \12 by group count)
//   {,n} and {,} quantifiers             -> {0,n}, {0,}  (literal braces in PCRE2 10.42)
//   any other {  that is not a quantifier -> \{ ; a [ inside a class -> \[ (no POSIX classes)
//   (?u) / (?u:                          -> dropped (str patterns are Unicode already)
// and Python-only or PCRE2-only syntax is refused with the reason and the position: \N{...},
// (?a), (?L), (?t), escapes Python rejects (\e, \h, \K, \p{..}, \Q, ...), PCRE2 extensions Python
// rejects ((?|, (?R), (?1), (?<name>, (*VERB), (?C), ...), global flags not at the start.
// Compiled with PCRE2_UTF | PCRE2_UCP (Unicode \w, \d, \b, case folding, as Python's str
// patterns) and LF as the only newline (Python's `.`, `$`).
//
// Matching counts PCRE2's backtracking steps: past kMatchLimit (or kDepthLimit nested
// backtracking points) it throws RegexError instead of running for ever, as Python's `re`
// would on a pattern like "(.|.)*X".
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace lorasched::checkpoint {

// Why a pattern cannot be compiled or a match was abandoned. what() is one line without the
// pattern; the caller names the file, key and pattern.
class RegexError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class PythonRegex {
 public:
  static constexpr uint32_t kMatchLimit = 1'000'000;
  static constexpr uint32_t kDepthLimit = 10'000;

  // Translates and compiles a Python `re` pattern. Throws RegexError ("... at position N" of
  // `pattern` where there is one). `skip` characters at the start of `pattern` are the caller's
  // own wrapping: positions are reported relative to the text after them.
  static PythonRegex compile(std::string_view pattern, size_t skip = 0);

  PythonRegex(PythonRegex&&) noexcept;
  PythonRegex& operator=(PythonRegex&&) noexcept;
  ~PythonRegex();

  // re.fullmatch(pattern, s) is not None. Throws RegexError past the step limit.
  bool fullmatch(std::string_view s) const;
  // re.match(pattern, s) is not None (anchored at the start only).
  bool match(std::string_view s) const;

  // The PCRE2 pattern it compiled (for messages and tests).
  const std::string& translated() const { return translated_; }

 private:
  struct Code;
  PythonRegex() = default;
  bool run(std::string_view s, bool full) const;

  std::unique_ptr<Code> code_;
  std::string translated_;
};

// The translation alone (PCRE2 syntax); throws RegexError like compile(). Exposed for tests.
std::string translate_python_regex(std::string_view pattern, size_t skip = 0);

}  // namespace lorasched::checkpoint
