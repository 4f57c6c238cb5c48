// Escaping for everything the reports put into HTML or SVG. Model output and dataset text are hostile input: a
// response may hold "<script>", "</textarea>", quotes or a javascript: URL, and must show as text. Every string
// that did not come from this program's own literals goes through escape_text (element content) or
// escape_attr (a quoted attribute value); the reports never build URLs, event handlers or style attributes from
// data.
#pragma once

#include <string>
#include <string_view>

namespace mlabench::reports {

/// \brief Escapes `s` for HTML/SVG element content and double- or single-quoted attribute values: & < > " '
/// become entities, and bytes that are not valid UTF-8 become U+FFFD (a browser would guess an encoding otherwise).
/// Control characters other than tab, newline and carriage return become U+FFFD too (XML forbids them in SVG).
inline std::string escape_html(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 8);
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        default:
          if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') out += "\xEF\xBF\xBD";
          else if (c == 0x7F) out += "\xEF\xBF\xBD";
          else out += static_cast<char>(c);
      }
      ++i;
      continue;
    }
    // A well-formed UTF-8 sequence (no overlongs, no surrogates, <= U+10FFFF) is copied; anything else is U+FFFD.
    size_t len = 0;
    unsigned cp = 0;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
    bool ok = len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (ok && ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))))
      ok = false;
    if (ok) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

}  // namespace mlabench::reports
