// ensure_dataset: cache -> mirror -> official URLs. A dataset is built in `<cache>/.staging/<name>/` and renamed
// to `<cache>/<name>/` only once every file has its pinned SHA-256, the archives are extracted in place and the
// content digest matches, so a reader never sees a half-made folder. The `.verified.json` marker records the
// digest and a stat snapshot (size, mtime) of the files it covers: an unchanged snapshot means verified without
// reading a byte; a changed one triggers a re-hash, and a failed re-hash a rebuild that reuses the dataset's
// intact source files. Builders in several processes take turns through flock() on the cache folder. An
// integrity failure (wrong bytes, refused archive, digest mismatch) removes everything of the dataset; a
// missing source keeps the staged files and `.part` downloads so the next call continues where this one stopped.
#include "harness/data/fetch.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/check.h"
#include "core/digest.h"
#include "harness/data/download.h"
#include "harness/data/manifest.h"

namespace mlabench::data {

namespace fs = std::filesystem;

namespace {

constexpr const char* kMarkerName = ".verified.json";

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

struct Mirror {
  enum class Kind { NONE, FOLDER, URL };
  Kind kind = Kind::NONE;
  fs::path folder;
  std::string url_prefix;  // without the trailing '/'
};

Mirror resolve_mirror(const FetchOptions& o) {
  const std::string spelled = o.mirror.empty() ? env_or_empty("MLABENCH_DATA_MIRROR") : o.mirror;
  Mirror m;
  if (spelled.empty()) return m;
  if (spelled.starts_with("http://") || spelled.starts_with("https://")) {
    m.kind = Mirror::Kind::URL;
    m.url_prefix = spelled;
    while (m.url_prefix.ends_with("/")) m.url_prefix.pop_back();
    return m;
  }
  std::string path = spelled;
  if (path.starts_with("file://")) {
    path = path.substr(7);
    if (path.starts_with("localhost/")) path = path.substr(9);
    MLABENCH_CHECK(path.starts_with("/"),
                   "mirror \"{}\": a file:// URL must hold an absolute path (file:///abs/path). HINT: write "
                   "file:///path/to/datasets or give the folder itself",
                   spelled);
  } else {
    MLABENCH_CHECK(spelled.find("://") == std::string::npos,
                   "mirror \"{}\" is neither a folder, a file:// URL nor an http(s):// URL prefix. HINT: give "
                   "--mirror DIR or --mirror https://host/prefix",
                   spelled);
  }
  m.kind = Mirror::Kind::FOLDER;
  m.folder = path;
  return m;
}

std::string utc_now_iso8601() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

nlohmann::json snapshot_json(const std::vector<SelectedFile>& files) {
  nlohmann::json out = nlohmann::json::array();
  for (const SelectedFile& f : files) out.push_back({{"path", f.path}, {"size", f.size}, {"mtime_ns", f.mtime_ns}});
  return out;
}

// `digest` is the content digest verified: the manifest's, or for an unpinned manifest the one observed when the
// dataset was first fetched (trust on first use; later checks hold the folder to it).
void write_marker(const fs::path& dir, const DatasetManifest& m, const std::string& digest) {
  const nlohmann::json marker = {{"name", m.name},
                                 {"version", m.version},
                                 {"content_sha256", digest},
                                 {"pinned", !m.content_sha256.empty()},
                                 {"verified_at", utc_now_iso8601()},
                                 {"files", snapshot_json(select_files(dir, m.digest_files))}};
  const fs::path tmp = dir / (std::string(kMarkerName) + ".tmp");
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << marker.dump(1) << '\n';
    MLABENCH_CHECK(out.good(), "cannot write {}. HINT: check free space and permissions", tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, dir / kMarkerName, ec);
  MLABENCH_CHECK(!ec, "cannot rename {} into place: {}. HINT: check permissions", tmp.string(), ec.message());
}

bool is_verified(const fs::path& dir, const DatasetManifest& m) {
  std::ifstream in(dir / kMarkerName);
  if (!in.good()) return false;
  const nlohmann::json marker = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  // A damaged marker counts as absent.
  try {
    if (!marker.is_object()) return false;
    const std::string expected = m.content_sha256.empty() ? marker.value("content_sha256", "") : m.content_sha256;
    if (expected.empty() || marker.value("content_sha256", "") != expected) return false;
    if (marker.value("files", nlohmann::json()) == snapshot_json(select_files(dir, m.digest_files))) return true;
    // Files were touched since verification: the bytes decide.
    if (content_digest(dir, m.digest_files) != expected) return false;
    write_marker(dir, m, expected);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

// Serializes builders across processes and threads (flock locks belong to the open file description).
class CacheLock {
 public:
  explicit CacheLock(const fs::path& dir) : fd_(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {
    MLABENCH_CHECK(fd_ >= 0, "cannot open the dataset cache {} to lock it: {}. HINT: check its permissions, or "
                   "choose another with --cache-dir or MLABENCH_DATA_DIR",
                   dir.string(), std::strerror(errno));
    while (::flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
    }
  }
  ~CacheLock() { ::close(fd_); }
  CacheLock(const CacheLock&) = delete;
  CacheLock& operator=(const CacheLock&) = delete;

 private:
  int fd_;
};

class DatasetBuilder {
 public:
  DatasetBuilder(const DatasetManifest& m, const FetchOptions& o, const fs::path& cache_dir)
      : m_(m), o_(o), mirror_(resolve_mirror(o)), final_dir_(cache_dir / m.name),
        staging_root_(cache_dir / ".staging"), staging_(staging_root_ / m.name) {
    download_options_.timeout_seconds = o.timeout_seconds;
    download_options_.log = o.log;
  }

  void build() {
    std::error_code ec;
    fs::create_directories(staging_, ec);
    MLABENCH_CHECK(!ec, "cannot create {}: {}. HINT: check free space and permissions, or choose another cache with "
                   "--cache-dir or MLABENCH_DATA_DIR",
                   staging_.string(), ec.message());
    prune_staging();
    for (const ManifestFile& f : m_.files) {
      const fs::path dest = staging_ / f.path;
      if (!f.sha256.empty() && fs::is_regular_file(dest) && sha256_file_hex(dest) == f.sha256) continue;
      std::string source;
      try {
        source = obtain(f, dest);
      } catch (const Error&) {
        keep_only_resumable();
        throw;
      }
      const std::string actual = f.sha256.empty() ? "" : sha256_file_hex(dest);
      if (actual != f.sha256) {
        discard();
        MLABENCH_FAIL("dataset '{}': file '{}' from {} has sha256 {}, the manifest pins {}; removed it (nothing of "
                      "'{}' is left in the cache). HINT: that source serves other bytes than the manifest names: fix "
                      "or drop the mirror's copy, or if upstream changed on purpose update {}",
                      m_.name, f.path, source, actual, f.sha256, m_.name, m_.manifest_path.string());
      }
      ++sources_[source_kind(source)];
    }
    try {
      extract_all();
    } catch (const Error&) {
      discard();
      throw;
    }
    const std::string digest = content_digest(staging_, m_.digest_files);
    // An unpinned manifest is held to the digest its first fetch recorded (trust on first use).
    const std::string expected = m_.content_sha256.empty() ? recorded_digest() : m_.content_sha256;
    if (!expected.empty() && digest != expected) {
      discard();
      MLABENCH_FAIL("dataset '{}': the extracted files have content digest {}, {} {}; removed them (nothing new of "
                    "'{}' is kept). HINT: a source packaged different files; compare it with the files digest_files "
                    "selects (docs/datasets.md, \"Content digest\")",
                    m_.name, digest, m_.content_sha256.empty() ? "the first fetch recorded" : "the manifest expects",
                    expected, m_.name);
    }
    if (expected.empty())
      log(fmt::format("{}: the manifest pins no content digest; recorded {} (later runs are held to it). HINT: pin it "
                      "in {} once the source is trusted", m_.name, digest, m_.manifest_path.string()));
    write_marker(staging_, m_, digest);
    fs::remove_all(final_dir_, ec);
    fs::rename(staging_, final_dir_, ec);
    MLABENCH_CHECK(!ec, "cannot move the verified {} to {}: {}. HINT: check permissions on the cache folder",
                   staging_.string(), final_dir_.string(), ec.message());
    fs::remove(staging_root_, ec);  // only when empty: other datasets may be staged there
    // One line per dataset (not one per file: LiveCodeBench has dozens): where its files came from, what was
    // extracted, and the verified digest.
    std::vector<std::string> from;
    for (const auto& [kind, n] : sources_) from.push_back(fmt::format("{} file{} from {}", n, n == 1 ? "" : "s", kind));
    if (from.empty()) from.push_back("staged files reused");
    log(fmt::format("{}: {}{}; verified (content sha256 {}) in {}", m_.name, fmt::join(from, ", "),
                    extracted_.empty() ? "" : fmt::format("; {}", fmt::join(extracted_, ", ")), digest,
                    final_dir_.string()));
  }

 private:
  // The content digest in the cached folder's marker ("" when there is none): what an unpinned dataset's first
  // fetch saw.
  std::string recorded_digest() const {
    std::ifstream in(final_dir_ / kMarkerName);
    if (!in.good()) return "";
    const nlohmann::json marker = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    return marker.is_object() && marker.value("name", "") == m_.name ? marker.value("content_sha256", "") : "";
  }

  void log(const std::string& line) const {
    if (o_.log) o_.log(line);
  }

  // Where obtain() found a file, without the file's own path: the summary line counts files per source.
  std::string source_kind(const std::string& source) const {
    if (source.starts_with("the cache's earlier copy")) return "the cache's earlier copy";
    if (source.starts_with("mirror file ")) return "the mirror folder " + mirror_.folder.string();
    if (source.starts_with("mirror URL ")) return "the mirror " + mirror_.url_prefix;
    return "upstream";
  }

  // Puts the file at `dest` and says where it came from, or throws saying where it was looked for.
  std::string obtain(const ManifestFile& f, const fs::path& dest) {
    std::error_code ec;
    fs::create_directories(dest.parent_path(), ec);
    const fs::path earlier = final_dir_ / f.path;
    if (!f.sha256.empty() && fs::is_regular_file(earlier) && sha256_file_hex(earlier) == f.sha256) {
      copy_into(earlier, dest);
      return "the cache's earlier copy " + earlier.string();
    }
    std::vector<std::string> tried;
    const std::string mirror_relative = m_.name + "/" + f.path;
    if (mirror_.kind == Mirror::Kind::NONE) {
      tried.push_back("no mirror is set (--mirror DIR|URL or MLABENCH_DATA_MIRROR)");
    } else if (mirror_.kind == Mirror::Kind::FOLDER) {
      const fs::path src = mirror_.folder / mirror_relative;
      if (fs::is_regular_file(src)) {
        copy_into(src, dest);
        return "mirror file " + src.string();
      }
      tried.push_back(fs::is_directory(mirror_.folder)
                          ? fmt::format("the mirror folder has no file {}", src.string())
                          : fmt::format("the mirror folder {} does not exist", mirror_.folder.string()));
    } else {
      const std::string url = mirror_.url_prefix + "/" + mirror_relative;
      const DownloadResult r = download_file(url, dest, download_options_);
      if (r.status == DownloadStatus::OK) return "mirror URL " + url;
      tried.push_back("mirror: " + r.message);
    }
    if (!o_.allow_network) {
      tried.push_back(fmt::format("the official URL{} {} not tried: network off (--offline)",
                                  f.urls.size() == 1 ? "" : "s", fmt::join(f.urls, ", ")));
    } else if (f.urls.empty()) {
      tried.push_back("the manifest lists no official URL for it");
    } else {
      for (const std::string& url : f.urls) {
        const DownloadResult r = download_file(url, dest, download_options_);
        if (r.status == DownloadStatus::OK) return url;
        tried.push_back(r.message);
      }
    }
    MLABENCH_FAIL("dataset '{}': file '{}' is missing: {}. HINT: run `mlabench fetch {} --mirror DIR` with DIR a "
                  "folder laid out like ../shared/datasets (holding {}), or set MLABENCH_DATA_MIRROR to such a folder "
                  "or an http(s) URL prefix, or connect to the network{}",
                  m_.name, f.path, fmt::join(tried, "; "), m_.name, mirror_relative,
                  o_.allow_network ? "" : " and drop --offline");
  }

  static void copy_into(const fs::path& src, const fs::path& dest) {
    std::error_code ec;
    fs::copy_file(src, dest, fs::copy_options::overwrite_existing, ec);
    MLABENCH_CHECK(!ec, "cannot copy {} to {}: {}. HINT: check permissions and free space", src.string(),
                   dest.string(), ec.message());
  }

  void extract_all() {
    for (const ManifestFile& f : m_.files) {
      const fs::path file = staging_ / f.path;
      const ArchiveKind kind = f.extract == ArchiveKind::AUTO ? sniff_archive_kind(file) : f.extract;
      if (kind == ArchiveKind::NONE) continue;
      const int64_t n = extract_archive(file, kind, file.parent_path(), o_.archive_limits);
      extracted_.push_back(
          fmt::format("extracted {} file{} from {} ({})", n, n == 1 ? "" : "s", f.path, archive_kind_name(kind)));
    }
  }

  // A staging folder left by an interrupted run keeps only the manifest's files and their .part downloads:
  // extracted members or an extraction's temporary folder from before would otherwise collide with this run's
  // extraction (which never replaces a file) or travel into the dataset folder.
  void prune_staging() {
    std::set<fs::path> keep;
    for (const ManifestFile& f : m_.files) {
      keep.insert(staging_ / f.path);
      keep.insert(staging_ / (f.path + ".part"));
    }
    std::error_code ec, type_ec;
    std::vector<fs::path> stale;
    for (auto it = fs::recursive_directory_iterator(staging_, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
      if (!it->is_directory(type_ec) && !keep.contains(it->path())) stale.push_back(it->path());
    for (const fs::path& p : stale) fs::remove(p, ec);
    remove_empty_folders();
  }

  // After a missing source: what stays is what the next call can use (complete files, .part downloads).
  void keep_only_resumable() {
    remove_empty_folders();
    std::error_code ec;
    fs::remove(staging_, ec);
    fs::remove(staging_root_, ec);
  }

  // Empty folders under the staging folder (not the folder itself).
  void remove_empty_folders() {
    std::error_code ec;
    std::vector<fs::path> dirs;
    for (auto it = fs::recursive_directory_iterator(staging_, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
      if (it->is_directory()) dirs.push_back(it->path());
    // Deepest first, so a folder emptied by removing its empty children goes too.
    std::sort(dirs.begin(), dirs.end(), [](const fs::path& a, const fs::path& b) { return a.string() > b.string(); });
    for (const fs::path& d : dirs) fs::remove(d, ec);  // fails, harmlessly, on folders that hold files
  }

  void discard() {
    std::error_code ec;
    fs::remove_all(staging_, ec);
    fs::remove_all(final_dir_, ec);
    fs::remove(staging_root_, ec);
  }

  const DatasetManifest& m_;
  const FetchOptions& o_;
  const Mirror mirror_;
  const fs::path final_dir_, staging_root_, staging_;
  DownloadOptions download_options_;
  std::map<std::string, int64_t> sources_;  // files per source, for the summary line
  std::vector<std::string> extracted_;       // "extracted N files from F (kind)", for the summary line
};

}  // namespace

fs::path resolve_cache_dir(const FetchOptions& options) {
  fs::path dir;
  if (!options.cache_dir.empty()) {
    dir = options.cache_dir;
  } else if (const std::string d = env_or_empty("MLABENCH_DATA_DIR"); !d.empty()) {
    dir = d;
  } else if (const std::string x = env_or_empty("XDG_CACHE_HOME"); !x.empty()) {
    dir = fs::path(x) / "mlabench" / "datasets";
  } else {
    const std::string home = env_or_empty("HOME");
    MLABENCH_CHECK(!home.empty(), "no dataset cache folder: none of --cache-dir, MLABENCH_DATA_DIR, XDG_CACHE_HOME and "
                   "HOME is set. HINT: pass --cache-dir DIR or set MLABENCH_DATA_DIR");
    dir = fs::path(home) / ".cache" / "mlabench" / "datasets";
  }
  return fs::absolute(dir);
}

fs::path resolve_manifests_dir(const FetchOptions& options) {
  return options.manifests_dir.empty() ? fs::path(MLABENCH_MANIFESTS_DIR) : options.manifests_dir;
}

fs::path ensure_dataset(const std::string& name, const FetchOptions& options) {
  const DatasetManifest m = load_manifest(resolve_manifests_dir(options), name);
  const fs::path cache = resolve_cache_dir(options);
  const fs::path dir = cache / name;
  if (is_verified(dir, m)) return dir;
  std::error_code ec;
  fs::create_directories(cache, ec);
  MLABENCH_CHECK(!ec, "cannot create the dataset cache {}: {}. HINT: choose another with --cache-dir or "
                 "MLABENCH_DATA_DIR",
                 cache.string(), ec.message());
  const CacheLock lock(cache);
  if (is_verified(dir, m)) return dir;  // another process built it while this one waited
  DatasetBuilder(m, options, cache).build();
  return dir;
}

std::vector<std::string> list_datasets(const FetchOptions& options) {
  return manifest_names(resolve_manifests_dir(options));
}

std::optional<fs::path> find_verified_dataset(const std::string& name, const FetchOptions& options) {
  const DatasetManifest m = load_manifest(resolve_manifests_dir(options), name);
  const fs::path dir = resolve_cache_dir(options) / name;
  if (is_verified(dir, m)) return dir;
  return std::nullopt;
}

}  // namespace mlabench::data
