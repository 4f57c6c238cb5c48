// SHA-256 through OpenSSL's EVP interface, streamed over files in 1 MiB reads, and the content digest of a
// dataset folder. The content digest hashes a listing of (path, file hash) lines rather than the files one
// after another, so a file cannot be moved to another name, and bytes cannot shift between two files, without
// the digest changing; and it can be reproduced with coreutils (docs/datasets.md).
#include "core/digest.h"

#include <fnmatch.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <memory>

#include <fmt/ranges.h>

#include "core/check.h"

namespace mlabench::data {

namespace {

struct EvpContextFree {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using EvpContext = std::unique_ptr<EVP_MD_CTX, EvpContextFree>;

EvpContext sha256_init() {
  EvpContext ctx(EVP_MD_CTX_new());
  MLABENCH_ICHECK(ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1, "OpenSSL SHA-256 init failed");
  return ctx;
}

std::array<unsigned char, 32> sha256_final(EVP_MD_CTX* ctx) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int n = 0;
  MLABENCH_ICHECK(EVP_DigestFinal_ex(ctx, md.data(), &n) == 1 && n == 32, "OpenSSL SHA-256 final failed");
  std::array<unsigned char, 32> out{};
  std::copy_n(md.begin(), 32, out.begin());
  return out;
}

std::string sha256_final_hex(EVP_MD_CTX* ctx) {
  const std::array<unsigned char, 32> md = sha256_final(ctx);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex(64, '0');
  for (size_t i = 0; i < md.size(); ++i) {
    hex[2 * i] = kHex[md[i] >> 4];
    hex[2 * i + 1] = kHex[md[i] & 15];
  }
  return hex;
}

std::vector<std::string_view> split_segments(std::string_view path) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t slash = path.find('/', start);
    const size_t end = slash == std::string_view::npos ? path.size() : slash;
    out.push_back(path.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

bool match_segments(const std::vector<std::string>& pattern, size_t pi, const std::vector<std::string>& path,
                    size_t si) {
  if (pi == pattern.size()) return si == path.size();
  if (pattern[pi] == "**") {
    for (size_t k = si; k <= path.size(); ++k)
      if (match_segments(pattern, pi + 1, path, k)) return true;
    return false;
  }
  if (si == path.size()) return false;
  return fnmatch(pattern[pi].c_str(), path[si].c_str(), 0) == 0 && match_segments(pattern, pi + 1, path, si + 1);
}

std::vector<std::string> to_strings(const std::vector<std::string_view>& v) {
  return std::vector<std::string>(v.begin(), v.end());
}

}  // namespace

std::string sha256_hex(std::string_view bytes) {
  EvpContext ctx = sha256_init();
  MLABENCH_ICHECK(EVP_DigestUpdate(ctx.get(), bytes.data(), bytes.size()) == 1, "OpenSSL SHA-256 update failed");
  return sha256_final_hex(ctx.get());
}

std::string sha256_base64(std::string_view bytes) {
  EvpContext ctx = sha256_init();
  MLABENCH_ICHECK(EVP_DigestUpdate(ctx.get(), bytes.data(), bytes.size()) == 1, "OpenSSL SHA-256 update failed");
  const std::array<unsigned char, 32> md = sha256_final(ctx.get());
  std::string out(44 + 1, '\0');  // 4 characters per 3 bytes, padded, and EVP_EncodeBlock's NUL
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), md.data(), static_cast<int>(md.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string sha256_file_hex(const std::filesystem::path& file) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(file.c_str(), "rb"), &std::fclose);
  MLABENCH_CHECK(f != nullptr, "cannot open {} to hash it. HINT: check that the file exists and is readable",
                 file.string());
  EvpContext ctx = sha256_init();
  char buf[1 << 16];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0)
    MLABENCH_ICHECK(EVP_DigestUpdate(ctx.get(), buf, n) == 1, "OpenSSL SHA-256 update failed");
  MLABENCH_CHECK(!std::ferror(f.get()), "read error while hashing {}. HINT: check the disk and the file",
                 file.string());
  return sha256_final_hex(ctx.get());
}

bool glob_match(std::string_view pattern, std::string_view path) {
  return match_segments(to_strings(split_segments(pattern)), 0, to_strings(split_segments(path)), 0);
}

std::vector<SelectedFile> select_files(const std::filesystem::path& root, const std::vector<std::string>& globs) {
  namespace fs = std::filesystem;
  std::vector<SelectedFile> out;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  std::vector<std::vector<std::string>> patterns;
  for (const std::string& g : globs) patterns.push_back(to_strings(split_segments(g)));
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    const std::string name = it->path().filename().string();
    if (!name.empty() && name[0] == '.') {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file()) continue;
    const std::string rel = it->path().lexically_relative(root).generic_string();
    const std::vector<std::string> segments = to_strings(split_segments(rel));
    if (std::none_of(patterns.begin(), patterns.end(),
                     [&](const std::vector<std::string>& p) { return match_segments(p, 0, segments, 0); }))
      continue;
    struct stat st {};
    MLABENCH_CHECK(::stat(it->path().c_str(), &st) == 0, "cannot stat {}. HINT: check its permissions",
                   it->path().string());
    out.push_back({rel, static_cast<uint64_t>(st.st_size),
                   static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec});
  }
  std::sort(out.begin(), out.end(), [](const SelectedFile& a, const SelectedFile& b) { return a.path < b.path; });
  return out;
}

std::string content_digest(const std::filesystem::path& root, const std::vector<std::string>& globs) {
  const std::vector<SelectedFile> files = select_files(root, globs);
  MLABENCH_CHECK(!files.empty(),
                 "no file under {} matches the digest globs [{}]. HINT: the folder is incomplete, or the manifest's "
                 "digest_files do not describe it",
                 root.string(), fmt::join(globs, ", "));
  std::string listing;
  for (const SelectedFile& f : files) listing += f.path + '\t' + sha256_file_hex(root / f.path) + '\n';
  return sha256_hex(listing);
}

}  // namespace mlabench::data
