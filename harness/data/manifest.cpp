// Manifest parsing and validation. Paths and globs in a manifest must stay inside the dataset folder (no
// leading '/', no '..'), and hashes must be 64 lowercase hex digits, because the fetch code builds file system
// paths and compares digests from them as they are.
#include "harness/data/manifest.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/input_file.h"
#include "core/json_fields.h"

namespace mlabench::data {

namespace fs = std::filesystem;

namespace {

bool is_sha256_hex(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool is_inside_relative(const std::string& p) {
  if (p.empty() || p[0] == '/' || p.find('\\') != std::string::npos) return false;
  size_t start = 0;
  while (start <= p.size()) {
    const size_t slash = p.find('/', start);
    const size_t end = slash == std::string::npos ? p.size() : slash;
    const std::string segment = p.substr(start, end - start);
    if (segment.empty() || segment == "." || segment == "..") return false;
    start = end + 1;
  }
  return true;
}

std::vector<std::string> string_list(const JsonFields& f, const std::string& key) {
  const nlohmann::json& v = f.raw(key);
  MLABENCH_CHECK(v.is_array() && std::all_of(v.begin(), v.end(), [](const auto& e) { return e.is_string(); }),
                 "{}: field '{}' must be a list of strings, found {}. HINT: fix the manifest", f.where(), key,
                 v.dump());
  return v.get<std::vector<std::string>>();
}

std::string relative_path_field(const JsonFields& f, const std::string& key, const std::string& value) {
  MLABENCH_CHECK(is_inside_relative(value),
                 "{}: '{}' entry \"{}\" must be a relative '/'-separated path inside the dataset folder (no leading "
                 "'/', no '.' or '..' segments). HINT: fix the manifest",
                 f.where(), key, value);
  return value;
}

}  // namespace

DatasetManifest load_manifest(const fs::path& manifests_dir, const std::string& name) {
  MLABENCH_CHECK(!name.empty() && name.find_first_of("/\\") == std::string::npos && name[0] != '.',
                 "dataset name \"{}\" is not a plain name. HINT: `mlabench fetch --list` shows the known datasets",
                 name);
  const fs::path file = manifests_dir / (name + ".json");
  refuse_non_regular_file(file, "dataset manifest");
  std::ifstream in(file);
  MLABENCH_CHECK(in.good(), "no manifest for dataset '{}': {} does not exist. HINT: `mlabench fetch --list` shows the "
                 "known datasets; a new one needs datasets_manifest/{}.json (docs/datasets.md)",
                 name, file.string(), name);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for 1e999
    MLABENCH_FAIL("manifest {} is not valid JSON: {}. HINT: fix the manifest", file.string(), e.what());
  }
  const JsonFields f(j, "manifest " + file.string());
  DatasetManifest m;
  m.manifest_path = file;
  m.name = f.string("name");
  MLABENCH_CHECK(m.name == name, "{}: name is \"{}\" but the file is named {}.json. HINT: make them agree", f.where(),
                 m.name, name);
  m.version = f.string("version");
  m.description = f.string("description");
  m.license = f.string("license");
  m.homepage = f.string("homepage");
  m.format = f.string("format");

  const nlohmann::json& splits = f.raw("splits");
  MLABENCH_CHECK(splits.is_object(), "{}: 'splits' must be an object of split name -> {{rows, files}}. HINT: fix the "
                 "manifest", f.where());
  for (const auto& [split_name, value] : splits.items()) {
    const JsonFields s(value, f.where() + " split '" + split_name + "'");
    ManifestSplit split{split_name, s.integer("rows"), string_list(s, "files")};
    for (const std::string& g : split.files) relative_path_field(s, "files", g);
    m.splits.push_back(std::move(split));
  }

  const nlohmann::json& files = f.raw("files");
  MLABENCH_CHECK(files.is_array() && !files.empty(), "{}: 'files' must be a non-empty list. HINT: fix the manifest",
                 f.where());
  for (size_t i = 0; i < files.size(); ++i) {
    const JsonFields e(files[i], fmt::format("{} files[{}]", f.where(), i));
    ManifestFile mf;
    mf.path = relative_path_field(e, "path", e.string("path"));
    mf.urls = e.has("urls") ? string_list(e, "urls") : std::vector<std::string>{};
    mf.sha256 = e.string_or("sha256", "");
    MLABENCH_CHECK(mf.sha256.empty() || is_sha256_hex(mf.sha256),
                   "{}: sha256 \"{}\" is not 64 lowercase hex digits. HINT: fix the manifest", e.where(), mf.sha256);
    mf.extract = parse_archive_kind(e.string_or("extract", "none"), e.where());
    for (const ManifestFile& other : m.files)
      MLABENCH_CHECK(other.path != mf.path, "{}: path \"{}\" is listed twice. HINT: fix the manifest", e.where(),
                     mf.path);
    m.files.push_back(std::move(mf));
  }

  m.digest_files = string_list(f, "digest_files");
  MLABENCH_CHECK(!m.digest_files.empty(), "{}: 'digest_files' is empty. HINT: list globs of the dataset's files",
                 f.where());
  for (const std::string& g : m.digest_files) relative_path_field(f, "digest_files", g);
  m.content_sha256 = f.string("content_sha256");
  MLABENCH_CHECK(m.content_sha256.empty() || is_sha256_hex(m.content_sha256),
                 "{}: content_sha256 \"{}\" is not 64 lowercase hex digits. HINT: fix the manifest (docs/datasets.md "
                 "shows how to compute it)",
                 f.where(), m.content_sha256);
  return m;
}

std::vector<std::string> manifest_names(const fs::path& manifests_dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(manifests_dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".json") names.push_back(e.path().stem().string());
  MLABENCH_CHECK(!ec, "cannot list the manifests folder {}: {}. HINT: point FetchOptions::manifests_dir at "
                 "datasets_manifest/",
                 manifests_dir.string(), ec.message());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace mlabench::data
