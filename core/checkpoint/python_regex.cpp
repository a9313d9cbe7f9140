#include "core/checkpoint/python_regex.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace lorasched::checkpoint {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_octal(char c) { return c >= '0' && c <= '7'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool is_ascii_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_ascii_alnum(char c) { return is_ascii_letter(c) || is_digit(c); }
// Python's verbose-mode whitespace (re._parser.WHITESPACE).
bool is_py_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// What the last item of the current sequence was, for Python's "nothing to repeat" and
// "multiple repeat" errors (PCRE2 accepts some of these, e.g. a{2}{3}).
enum class Prev { nothing, anchor, atom, repeat };

// Python `re` syntax -> PCRE2 syntax, one pass in the order of Python's own parser
// (re/_parser.py); `src_` maps every output byte to the input position it came from.
class Translator {
 public:
  Translator(std::string_view in, size_t skip) : in_(in), skip_(skip) {}

  std::string run() {
    while (i_ < in_.size()) step();
    if (!groups_.empty()) fail("missing ), unterminated subpattern", groups_.back().open);
    return std::move(out_);
  }

  // The input position of output byte `offset` (PCRE2's error offsets are into the output).
  size_t source_of(size_t offset) const {
    if (src_.empty()) return 0;
    return offset < src_.size() ? src_[offset] : in_.size();
  }

  [[noreturn]] void fail(const std::string& what, size_t at) const {
    throw RegexError(fmt::format("{} at position {}", what, at >= skip_ ? at - skip_ : 0));
  }

 private:
  struct Group {
    size_t open;
    bool verbose;  // the verbose flag outside it, restored at ')'
  };

  void put(std::string_view text, size_t at) {
    out_ += text;
    src_.insert(src_.end(), text.size(), at);
  }

  char peek(size_t k = 0) const { return i_ + k < in_.size() ? in_[i_ + k] : '\0'; }
  bool has(size_t k = 0) const { return i_ + k < in_.size(); }

  // An item was added: global flags can no longer come.
  void item(Prev p) {
    prev_ = p;
    at_start_ = false;
  }

  void step() {
    const size_t at = i_;
    const char c = in_[i_];
    if (verbose_ && is_py_space(c)) {
      ++i_;
      return;
    }
    if (verbose_ && c == '#') {
      while (i_ < in_.size() && in_[i_] != '\n') ++i_;
      return;
    }
    switch (c) {
      case '\\':
        escape(at);
        return;
      case '[':
        char_class(at);
        item(Prev::atom);
        return;
      case '(':
        open_group(at);
        return;
      case ')':
        if (groups_.empty()) fail("unbalanced parenthesis", at);
        verbose_ = groups_.back().verbose;
        groups_.pop_back();
        put(")", at);
        ++i_;
        item(Prev::atom);
        return;
      case '|':
        put("|", at);
        ++i_;
        prev_ = Prev::nothing;
        at_start_ = false;
        return;
      case '*':
      case '+':
      case '?':
        repeat(at, std::string(1, c));
        ++i_;
        return;
      case '{':
        brace(at);
        return;
      case '^':
      case '$':
        put(std::string_view(&in_[i_], 1), at);
        ++i_;
        item(Prev::anchor);
        return;
      default:
        // Literal (a UTF-8 sequence is copied byte by byte; only ASCII is special).
        put(std::string_view(&in_[i_], 1), at);
        ++i_;
        // Continuation bytes belong to the character just started.
        if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) item(Prev::atom);
        return;
    }
  }

  // `*`, `+`, `?` or a {m,n} (already in PCRE2 form), then an optional lazy `?` or possessive
  // `+`, which Python reads only right after the quantifier (no verbose space between).
  void repeat(size_t at, const std::string& quant) {
    if (prev_ == Prev::nothing || prev_ == Prev::anchor) fail("nothing to repeat", at);
    if (prev_ == Prev::repeat) fail("multiple repeat", at);
    put(quant, at);
    prev_ = Prev::repeat;
    at_start_ = false;
    const char next = peek(1);
    if (next == '?' || next == '+') {
      put(std::string(1, next), i_ + 1);
      ++i_;
    }
  }

  // Python reads '{' as a quantifier when it is {m}, {m,}, {,n}, {m,n} or {,} (digits only),
  // and as a literal brace otherwise; PCRE2 10.42 has no {,n} form.
  void brace(size_t at) {
    size_t j = i_ + 1;
    std::string lo, hi;
    while (j < in_.size() && is_digit(in_[j])) lo += in_[j++];
    bool comma = false;
    if (j < in_.size() && in_[j] == ',') {
      comma = true;
      ++j;
      while (j < in_.size() && is_digit(in_[j])) hi += in_[j++];
    }
    const bool quantifier = j < in_.size() && in_[j] == '}' && !(lo.empty() && !comma);
    if (!quantifier) {
      put("\\{", at);
      ++i_;
      item(Prev::atom);
      return;
    }
    // Python's limits: MAXREPEAT is 2**32 - 1 and min <= max; PCRE2's are 65535.
    auto value = [&](const std::string& digits) {
      if (digits.size() > 9) fail("the repetition number is too large", at);
      return std::stoul(digits);
    };
    if (!lo.empty() && !hi.empty() && value(lo) > value(hi))
      fail("min repeat greater than max repeat", at);
    if ((!lo.empty() && value(lo) > 65535) || (!hi.empty() && value(hi) > 65535))
      fail("a repetition count above 65535 is not supported", at);
    std::string q = "{";
    q += lo.empty() ? std::string_view("0") : std::string_view(lo);
    if (comma) {
      q += ',';
      q += hi;
    }
    q += '}';
    i_ = j;  // on the '}'
    repeat(at, q);
    ++i_;
  }

  // \xHH, \uHHHH, \UHHHHHHHH (exactly that many hex digits, as Python requires).
  void hex_escape(size_t at, char kind) {
    const size_t n = kind == 'x' ? 2 : kind == 'u' ? 4 : 8;
    std::string digits;
    for (size_t k = 0; k < n; ++k) {
      if (!has(2 + k) || !is_hex(peek(2 + k)))
        fail(fmt::format("incomplete escape \\{}{}", kind, digits), at);
      digits += peek(2 + k);
    }
    if (kind == 'U' && std::stoul(digits, nullptr, 16) > 0x10FFFF)
      fail(fmt::format("bad escape \\U{}", digits), at);
    put("\\x{" + digits + "}", at);
    i_ += 2 + n;
  }

  // An escape outside a class (re._parser._escape).
  void escape(size_t at) {
    if (!has(1)) fail("bad escape (end of pattern)", at);
    const char c = peek(1);
    switch (c) {
      case 'A':
      case 'b':
      case 'B':
        put(std::string{'\\', c}, at);
        i_ += 2;
        item(Prev::anchor);
        return;
      case 'Z':
      case 'z':  // Python 3.14's spelling of \Z
        put("\\z", at);
        i_ += 2;
        item(Prev::anchor);
        return;
      case 'd':
      case 'D':
      case 's':
      case 'S':
      case 'w':
      case 'W':
      case 'a':
      case 'f':
      case 'n':
      case 'r':
      case 't':
        put(std::string{'\\', c}, at);
        i_ += 2;
        item(Prev::atom);
        return;
      case 'v':
        put("\\x{0b}", at);
        i_ += 2;
        item(Prev::atom);
        return;
      case 'x':
      case 'u':
      case 'U':
        hex_escape(at, c);
        item(Prev::atom);
        return;
      case 'N':
        fail("named Unicode escapes (\\N{...}) are not supported", at);
      default:
        break;
    }
    if (c == '0') {  // \0, \0o, \0oo: octal
      size_t n = 1;
      while (n < 3 && is_octal(peek(1 + n))) ++n;
      put("\\o{" + std::string(in_.substr(i_ + 1, n)) + "}", at);
      i_ += 1 + n;
      item(Prev::atom);
      return;
    }
    if (is_digit(c)) {
      // Three octal digits make an octal escape; otherwise one or two digits are a group number.
      if (is_octal(c) && is_octal(peek(2)) && is_octal(peek(3))) {
        const std::string digits(in_.substr(i_ + 1, 3));
        if (std::stoul(digits, nullptr, 8) > 0377)
          fail(fmt::format("octal escape value \\{} outside of range 0-0o377", digits), at);
        put("\\o{" + digits + "}", at);
        i_ += 4;
        item(Prev::atom);
        return;
      }
      const size_t n = is_digit(peek(2)) ? 2 : 1;
      put("\\g{" + std::string(in_.substr(i_ + 1, n)) + "}", at);
      i_ += 1 + n;
      item(Prev::atom);
      return;
    }
    if (is_ascii_letter(c)) fail(fmt::format("bad escape \\{}", c), at);
    // Any other character stands for itself.
    put("\\", at);
    ++i_;
    put(std::string_view(&in_[i_], 1), i_);
    ++i_;
    item(Prev::atom);
  }

  // An escape inside a class (re._parser._class_escape); appends to the class text.
  void class_escape(size_t at) {
    if (!has(1)) fail("bad escape (end of pattern)", at);
    const char c = peek(1);
    switch (c) {
      case 'd':
      case 'D':
      case 's':
      case 'S':
      case 'w':
      case 'W':
      case 'a':
      case 'b':  // backspace in a class, in both
      case 'f':
      case 'n':
      case 'r':
      case 't':
        put(std::string{'\\', c}, at);
        i_ += 2;
        return;
      case 'v':
        put("\\x{0b}", at);
        i_ += 2;
        return;
      case 'x':
      case 'u':
      case 'U':
        hex_escape(at, c);
        return;
      case 'N':
        fail("named Unicode escapes (\\N{...}) are not supported", at);
      default:
        break;
    }
    if (is_octal(c)) {  // up to three octal digits
      size_t n = 1;
      while (n < 3 && is_octal(peek(1 + n))) ++n;
      const std::string digits(in_.substr(i_ + 1, n));
      if (std::stoul(digits, nullptr, 8) > 0377)
        fail(fmt::format("octal escape value \\{} outside of range 0-0o377", digits), at);
      put("\\o{" + digits + "}", at);
      i_ += 1 + n;
      return;
    }
    if (is_ascii_alnum(c)) fail(fmt::format("bad escape \\{}", c), at);
    put("\\", at);
    ++i_;
    put(std::string_view(&in_[i_], 1), i_);
    ++i_;
  }

  // [...]: Python reads a ']' right after '[' or '[^' as a literal, and has no POSIX classes,
  // so a '[' inside (and a ':', '.', '=' first, which PCRE2 would read as [:name:]) is escaped.
  void char_class(size_t open) {
    put("[", open);
    ++i_;
    if (peek() == '^') {
      put("^", i_);
      ++i_;
    }
    bool first = true;
    while (true) {
      if (!has()) fail("unterminated character set", open);
      const size_t at = i_;
      const char c = peek();
      if (c == ']' && !first) {
        put("]", at);
        ++i_;
        return;
      }
      if (c == '\\') {
        class_escape(at);
      } else if (c == '[' || (first && (c == ':' || c == '.' || c == '='))) {
        put(std::string{'\\', c}, at);
        ++i_;
      } else if (c == ']') {  // first: a literal
        put("\\]", at);
        ++i_;
      } else {
        put(std::string_view(&in_[i_], 1), at);
        ++i_;
      }
      first = false;
    }
  }

  // Inline flags after "(?" (re._parser._parse_flags): global (?imsx) or scoped (?i-s:...).
  void flags(size_t at) {
    // i_ is on the first flag letter or '-'.
    std::string on, off;
    bool minus = false;
    while (true) {
      if (!has()) fail(minus ? "missing :" : "missing -, : or )", at);
      const char c = peek();
      if (c == ')' || c == ':') break;
      if (c == '-' && !minus) {
        minus = true;
        ++i_;
        continue;
      }
      if (c == 'a' || c == 'L' || c == 't')
        fail(fmt::format("the inline flag '{}' is not supported", c), at);
      if (c != 'i' && c != 'm' && c != 's' && c != 'x' && c != 'u')
        fail(is_ascii_letter(c) ? "unknown flag" : (minus ? "missing :" : "missing -, : or )"), i_);
      if (c == 'u' && minus) fail("bad inline flags: cannot turn off flags 'a', 'u' and 'L'", at);
      (minus ? off : on) += c;
      ++i_;
    }
    if (minus && off.empty()) fail("missing flag", at);
    auto has_flag = [](const std::string& s, char f) { return s.find(f) != std::string::npos; };
    auto pcre_letters = [](const std::string& s) {
      std::string r;
      for (char f : s)
        if (f != 'u' && f != 'x' && r.find(f) == std::string::npos) r += f;
      return r;
    };
    const bool global = peek() == ')';
    if (global) {
      if (minus) fail("missing :", at);
      if (!at_start_ || !groups_.empty())
        fail("global flags not at the start of the expression", at);
      if (has_flag(on, 'x')) verbose_ = true;
      const std::string letters = pcre_letters(on);
      if (!letters.empty()) put("(?" + letters + ")", at);
      ++i_;
      return;  // adds no item: at_start_ stays
    }
    for (char f : on)
      if (has_flag(off, f)) fail("bad inline flags: flag turned on and off", at);
    groups_.push_back({at, verbose_});
    if (has_flag(on, 'x')) verbose_ = true;
    if (has_flag(off, 'x')) verbose_ = false;
    std::string text = "(?" + pcre_letters(on);
    const std::string o = pcre_letters(off);
    if (!o.empty()) text += "-" + o;
    put(text + ":", at);
    ++i_;
    prev_ = Prev::nothing;
    at_start_ = false;
  }

  void open_group(size_t at) {
    if (peek(1) == '*') fail("nothing to repeat", at + 1);  // PCRE2 would read a (*VERB)
    if (peek(1) != '?') {
      groups_.push_back({at, verbose_});
      put("(", at);
      ++i_;
      prev_ = Prev::nothing;
      at_start_ = false;
      return;
    }
    if (!has(2)) fail("unexpected end of pattern", at);
    const char c = peek(2);
    auto open = [&](std::string_view text, size_t len) {
      groups_.push_back({at, verbose_});
      put(text, at);
      i_ += len;
      prev_ = Prev::nothing;
      at_start_ = false;
    };
    switch (c) {
      case ':':
      case '=':
      case '!':
      case '>':
        open(in_.substr(i_, 3), 3);
        return;
      case '<':
        if (peek(3) == '=' || peek(3) == '!') {
          open(in_.substr(i_, 4), 4);
          return;
        }
        fail(fmt::format("unknown extension ?<{}", std::string(1, peek(3))), at);
      case 'P':
        if (peek(3) == '<') {  // (?P<name>...): PCRE2 checks the name
          open("(?P<", 4);
          return;
        }
        if (peek(3) == '=') {  // (?P=name): a back reference, up to ')'
          size_t j = i_ + 4;
          while (j < in_.size() && in_[j] != ')') ++j;
          if (j == in_.size()) fail("missing ), unterminated name", at);
          put(in_.substr(i_, j + 1 - i_), at);
          i_ = j + 1;
          item(Prev::atom);
          return;
        }
        fail(fmt::format("unknown extension ?P{}", std::string(1, peek(3))), at);
      case '#': {  // a comment, up to the first ')'
        size_t j = i_ + 3;
        while (j < in_.size() && in_[j] != ')') ++j;
        if (j == in_.size()) fail("missing ), unterminated comment", at);
        i_ = j + 1;
        return;
      }
      case '(': {  // (?(group)yes|no): Python allows a group number or name only
        size_t j = i_ + 3;
        while (j < in_.size() && in_[j] != ')') ++j;
        if (j == in_.size()) fail("missing ), unterminated name", at);
        const std::string_view cond = in_.substr(i_ + 3, j - i_ - 3);
        bool digits = !cond.empty(), name = !cond.empty() && !is_digit(cond[0]);
        for (char ch : cond) {
          digits = digits && is_digit(ch);
          name = name && (is_ascii_alnum(ch) || ch == '_');
        }
        const bool pcre_special =
            cond == "DEFINE" || cond.starts_with("VERSION") ||
            (cond.starts_with("R") && name && (cond.size() == 1 || is_digit(cond[1])));
        if ((!digits && !name) || pcre_special)
          fail(fmt::format("bad character in group name '{}'", cond), at);
        open(in_.substr(i_, j + 1 - i_), j + 1 - i_);
        return;
      }
      default:
        break;
    }
    if (c == '-' || is_ascii_letter(c)) {
      i_ += 2;
      flags(at);
      return;
    }
    fail(fmt::format("unknown extension ?{}", std::string(1, c)), at);
  }

  std::string_view in_;
  size_t skip_;
  size_t i_ = 0;
  std::string out_;
  std::vector<size_t> src_;
  std::vector<Group> groups_;
  bool verbose_ = false;
  bool at_start_ = true;
  Prev prev_ = Prev::nothing;
};

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  const int n = pcre2_get_error_message(code, buf, sizeof buf);
  if (n < 0) return fmt::format("PCRE2 error {}", code);
  return std::string(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

}  // namespace

struct PythonRegex::Code {
  pcre2_code* code = nullptr;
  pcre2_match_context* match_ctx = nullptr;
  ~Code() {
    pcre2_match_context_free(match_ctx);
    pcre2_code_free(code);
  }
};

std::string translate_python_regex(std::string_view pattern, size_t skip) {
  return Translator(pattern, skip).run();
}

PythonRegex PythonRegex::compile(std::string_view pattern, size_t skip) {
  Translator tr(pattern, skip);
  PythonRegex re;
  re.translated_ = tr.run();
  pcre2_compile_context* cctx = pcre2_compile_context_create(nullptr);
  if (cctx == nullptr) throw std::bad_alloc();
  pcre2_set_newline(cctx, PCRE2_NEWLINE_LF);
  int err = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(re.translated_.data()), re.translated_.size(),
                    PCRE2_UTF | PCRE2_UCP | PCRE2_NEVER_BACKSLASH_C, &err, &offset, cctx);
  pcre2_compile_context_free(cctx);
  if (code == nullptr) tr.fail(pcre2_message(err), tr.source_of(offset));
  re.code_ = std::make_unique<Code>();
  re.code_->code = code;
  re.code_->match_ctx = pcre2_match_context_create(nullptr);
  if (re.code_->match_ctx == nullptr) throw std::bad_alloc();
  pcre2_set_match_limit(re.code_->match_ctx, kMatchLimit);
  pcre2_set_depth_limit(re.code_->match_ctx, kDepthLimit);
  return re;
}

PythonRegex::PythonRegex(PythonRegex&&) noexcept = default;
PythonRegex& PythonRegex::operator=(PythonRegex&&) noexcept = default;
PythonRegex::~PythonRegex() = default;

bool PythonRegex::run(std::string_view s, bool full) const {
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_->code, nullptr);
  if (md == nullptr) throw std::bad_alloc();
  const uint32_t options = PCRE2_ANCHORED | (full ? PCRE2_ENDANCHORED : 0);
  const int rc = pcre2_match(code_->code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0,
                             options, md, code_->match_ctx);
  pcre2_match_data_free(md);
  if (rc >= 0) return true;
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT)
    throw RegexError(
        fmt::format("matching it against '{}' took more than {} backtracking steps: the pattern "
                    "backtracks catastrophically; simplify it",
                    s, rc == PCRE2_ERROR_DEPTHLIMIT ? kDepthLimit : kMatchLimit));
  throw RegexError(fmt::format("matching it against '{}' failed: {}", s, pcre2_message(rc)));
}

bool PythonRegex::fullmatch(std::string_view s) const { return run(s, true); }
bool PythonRegex::match(std::string_view s) const { return run(s, false); }

}  // namespace lorasched::checkpoint
