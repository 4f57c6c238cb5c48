#include "tasks/code/pickle_string.h"

#include <cstdint>
#include <map>

#include <fmt/format.h>

#include "core/check.h"
#include "core/utf8.h"

namespace mlabench::tasks {

namespace {

// pickletools' names, so that a refusal says which construct the pickle tried to use.
std::string opcode_name(unsigned char op) {
  // clang-format off
  static const std::map<unsigned char, const char*> names = {
      {'(', "MARK"},         {'.', "STOP"},          {'0', "POP"},          {'1', "POP_MARK"},
      {'2', "DUP"},          {'F', "FLOAT"},         {'I', "INT"},          {'J', "BININT"},
      {'K', "BININT1"},      {'L', "LONG"},          {'M', "BININT2"},      {'N', "NONE"},
      {'P', "PERSID"},       {'Q', "BINPERSID"},     {'R', "REDUCE"},       {'S', "STRING"},
      {'T', "BINSTRING"},    {'U', "SHORT_BINSTRING"}, {'V', "UNICODE"},    {'X', "BINUNICODE"},
      {'a', "APPEND"},       {'b', "BUILD"},         {'c', "GLOBAL"},       {'d', "DICT"},
      {'}', "EMPTY_DICT"},   {'e', "APPENDS"},       {'g', "GET"},          {'h', "BINGET"},
      {'i', "INST"},         {'j', "LONG_BINGET"},   {'l', "LIST"},         {']', "EMPTY_LIST"},
      {'o', "OBJ"},          {'p', "PUT"},           {'q', "BINPUT"},       {'r', "LONG_BINPUT"},
      {'s', "SETITEM"},      {'t', "TUPLE"},         {')', "EMPTY_TUPLE"},  {'u', "SETITEMS"},
      {'G', "BINFLOAT"},     {'B', "BINBYTES"},      {'C', "SHORT_BINBYTES"}, {0x80, "PROTO"},
      {0x81, "NEWOBJ"},      {0x82, "EXT1"},         {0x83, "EXT2"},        {0x84, "EXT4"},
      {0x85, "TUPLE1"},      {0x86, "TUPLE2"},       {0x87, "TUPLE3"},      {0x88, "NEWTRUE"},
      {0x89, "NEWFALSE"},    {0x8a, "LONG1"},        {0x8b, "LONG4"},       {0x8c, "SHORT_BINUNICODE"},
      {0x8d, "BINUNICODE8"}, {0x8e, "BINBYTES8"},    {0x8f, "EMPTY_SET"},   {0x90, "ADDITEMS"},
      {0x91, "FROZENSET"},   {0x92, "NEWOBJ_EX"},    {0x93, "STACK_GLOBAL"}, {0x94, "MEMOIZE"},
      {0x95, "FRAME"},       {0x96, "BYTEARRAY8"},   {0x97, "NEXT_BUFFER"}, {0x98, "READONLY_BUFFER"},
  };
  // clang-format on
  const auto it = names.find(op);
  return fmt::format("{} (0x{:02x})", it == names.end() ? "an unknown opcode" : it->second, op);
}

class Reader {
 public:
  Reader(std::string_view bytes, const std::string& where) : s_(bytes), where_(where) {}

  std::string read() {
    std::string text;
    bool have_text = false;
    while (true) {
      MLABENCH_CHECK(pos_ < s_.size(),
                     "{}: the pickle ends at byte {} without STOP. HINT: the field is truncated; re-fetch the dataset",
                     where_, pos_);
      const size_t at = pos_;
      const unsigned char op = byte();
      switch (op) {
        case 0x80: {  // PROTO
          MLABENCH_CHECK(at == 0,
                         "{}: PROTO at byte {} (allowed only first). HINT: not a pickle LiveCodeBench "
                         "wrote; re-fetch the dataset",
                         where_, at);
          const unsigned proto = byte();
          MLABENCH_CHECK(proto <= 5, "{}: pickle protocol {} (known: 0..5). HINT: re-fetch the dataset", where_, proto);
          break;
        }
        case 0x95:  // FRAME: only a length hint for buffered readers; the bytes it covers are read op by op.
          MLABENCH_CHECK(little_endian(8) <= s_.size() - pos_,
                         "{}: FRAME at byte {} is longer than the pickle. "
                         "HINT: the field is truncated; re-fetch the dataset",
                         where_, at);
          break;
        case 'V':     // UNICODE: raw-unicode-escape text up to a newline
        case 'X':     // BINUNICODE: 4-byte length + UTF-8
        case 0x8c:    // SHORT_BINUNICODE: 1-byte length + UTF-8
        case 0x8d: {  // BINUNICODE8: 8-byte length + UTF-8
          refuse_unless(!have_text, op, at, "a second string");
          text = op == 'V' ? raw_unicode_escape(line()) : utf8(take(little_endian(op == 'X' ? 4 : op == 0x8c ? 1 : 8)));
          have_text = true;
          break;
        }
        // Memo stores leave the stack as it is.
        case 'p':
          refuse_unless(have_text, op, at, "a memo store before the string");
          line();
          break;
        case 'q':
          refuse_unless(have_text, op, at, "a memo store before the string");
          take(1);
          break;
        case 'r':
          refuse_unless(have_text, op, at, "a memo store before the string");
          take(4);
          break;
        case 0x94:
          refuse_unless(have_text, op, at, "a memo store before the string");
          break;
        case '.':
          refuse_unless(have_text, op, at, "STOP with no string");
          MLABENCH_CHECK(pos_ == s_.size(),
                         "{}: {} bytes after STOP. HINT: not a pickle LiveCodeBench wrote; re-fetch the dataset",
                         where_, s_.size() - pos_);
          return text;
        default:
          refuse_unless(false, op, at, "");
      }
    }
  }

 private:
  void refuse_unless(bool ok, unsigned char op, size_t at, const char* why) const {
    MLABENCH_CHECK(ok,
                   "{}: the pickle uses opcode {} at byte {}{}{}; only a pickled str is accepted (PROTO, FRAME, "
                   "one UNICODE/BINUNICODE/SHORT_BINUNICODE/BINUNICODE8, memo stores, STOP) and it is never executed. "
                   "HINT: this field is not the base64(zlib(pickle(str))) LiveCodeBench writes; do not use this "
                   "dataset file, re-fetch it from the manifest's source",
                   where_, opcode_name(op), at, *why ? ": " : "", why);
  }

  unsigned char byte() {
    MLABENCH_CHECK(pos_ < s_.size(),
                   "{}: the pickle ends inside an opcode at byte {}. HINT: the field is "
                   "truncated; re-fetch the dataset",
                   where_, pos_);
    return static_cast<unsigned char>(s_[pos_++]);
  }

  uint64_t little_endian(int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(byte()) << (8 * i);
    return v;
  }

  std::string_view take(uint64_t n) {
    MLABENCH_CHECK(n <= s_.size() - pos_,
                   "{}: a length of {} at byte {} runs past the end of the pickle ({} "
                   "bytes). HINT: the field is truncated; re-fetch the dataset",
                   where_, n, pos_, s_.size());
    const std::string_view out = s_.substr(pos_, n);
    pos_ += n;
    return out;
  }

  std::string_view line() {
    const size_t end = s_.find('\n', pos_);
    MLABENCH_CHECK(end != std::string_view::npos,
                   "{}: a protocol-0 argument at byte {} has no terminating "
                   "newline. HINT: the field is truncated; re-fetch the dataset",
                   where_, pos_);
    const std::string_view out = s_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return out;
  }

  std::string utf8(std::string_view bytes) const {
    MLABENCH_CHECK(unicode::valid(bytes), "{}: the pickled string is not valid UTF-8. HINT: re-fetch the dataset",
                   where_);
    return std::string(bytes);
  }

  // Python's raw-unicode-escape: bytes are Latin-1 code points, except that \uXXXX and \UXXXXXXXX are escapes
  // when the backslash ends an odd-length run of backslashes (an even run is that many literal backslashes).
  std::string raw_unicode_escape(std::string_view in) const {
    std::string out;
    size_t i = 0;
    while (i < in.size()) {
      if (in[i] != '\\') {
        unicode::append(out, static_cast<unsigned char>(in[i++]));
        continue;
      }
      size_t run = 0;
      while (i + run < in.size() && in[i + run] == '\\') ++run;
      const bool escape = run % 2 == 1 && i + run < in.size() && (in[i + run] == 'u' || in[i + run] == 'U');
      out.append(escape ? run - 1 : run, '\\');
      i += run;
      if (!escape) continue;
      const size_t digits = in[i] == 'u' ? 4 : 8;
      MLABENCH_CHECK(i + 1 + digits <= in.size(),
                     "{}: truncated \\{} escape in a protocol-0 string. HINT: re-fetch the dataset", where_, in[i]);
      char32_t c = 0;
      for (size_t k = 1; k <= digits; ++k) {
        const char h = in[i + k];
        const int v = h >= '0' && h <= '9'   ? h - '0'
                      : h >= 'a' && h <= 'f' ? h - 'a' + 10
                      : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                             : -1;
        MLABENCH_CHECK(v >= 0,
                       "{}: bad hex digit '{}' in a \\{} escape of a protocol-0 string. HINT: re-fetch the dataset",
                       where_, h, in[i]);
        c = c * 16 + static_cast<char32_t>(v);
      }
      MLABENCH_CHECK(c <= 0x10FFFF && (c < 0xD800 || c > 0xDFFF),
                     "{}: the escape \\{} in a protocol-0 string is "
                     "U+{:X}, not a Unicode scalar value. HINT: re-fetch the dataset",
                     where_, in[i], static_cast<uint32_t>(c));
      unicode::append(out, c);
      i += 1 + digits;
    }
    return out;
  }

  std::string_view s_;
  const std::string& where_;
  size_t pos_ = 0;
};

}  // namespace

std::string unpickle_str(std::string_view pickle, const std::string& where) { return Reader(pickle, where).read(); }

}  // namespace mlabench::tasks
