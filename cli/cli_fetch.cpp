// mlabench fetch: makes datasets present and verified in the cache and prints each one's folder on stdout (one
// line per name, so scripts can capture it); progress goes to stderr. --list prints every dataset with a
// manifest and whether it is cached and verified, without fetching anything.
#include "cli/cli_fetch.h"

#include <fmt/format.h>

#include <cstdio>
#include <string>
#include <vector>

#include "cli/cli_model.h"
#include "harness/data/fetch.h"
#include "harness/data/manifest.h"

namespace mlabench::cli {

namespace {

struct FetchArgs {
  std::vector<std::string> names;
  std::string cache_dir;
  std::string mirror;
  bool offline = false;
  bool list = false;
  double timeout_seconds = 60;
};

data::FetchOptions fetch_options(const FetchArgs& a) {
  data::FetchOptions o;
  o.cache_dir = a.cache_dir;
  o.mirror = a.mirror;
  o.allow_network = !a.offline;
  o.timeout_seconds = a.timeout_seconds;
  o.log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  return o;
}

void list_command(const FetchArgs& a) {
  const data::FetchOptions o = fetch_options(a);
  std::printf("cache: %s\n", data::resolve_cache_dir(o).string().c_str());
  for (const std::string& name : data::list_datasets(o)) {
    const data::DatasetManifest m = data::load_manifest(data::resolve_manifests_dir(o), name);
    const bool verified = data::find_verified_dataset(name, o).has_value();
    std::string rows;
    for (const data::ManifestSplit& s : m.splits) rows += fmt::format("{}{} {}", rows.empty() ? "" : ", ", s.name, s.rows);
    std::printf("%-14s %-10s %-34s %s\n", name.c_str(), verified ? "verified" : "not cached", rows.c_str(),
                m.license.c_str());
  }
}

}  // namespace

void add_fetch_command(CLI::App& app, int* exit_code) {
  static FetchArgs args;  // outlives parsing: the callback runs after it
  auto* cmd = app.add_subcommand(
      "fetch",
      "download, verify and extract datasets into the cache (datasets_manifest/<name>.json); prints each folder");
  cmd->add_option("names", args.names, "dataset names (see --list)");
  cmd->add_option("--cache-dir", args.cache_dir,
                  "cache folder (default: $MLABENCH_DATA_DIR, else $XDG_CACHE_HOME/mlabench/datasets, else "
                  "~/.cache/mlabench/datasets)");
  cmd->add_option("--mirror", args.mirror,
                  "a folder laid out like ../shared/datasets, a file:// URL of one, or an http(s) URL prefix "
                  "(default: $MLABENCH_DATA_MIRROR)");
  cmd->add_flag("--offline", args.offline, "use only the cache and the mirror; never the official URLs");
  cmd->add_flag("--list", args.list, "list the known datasets and whether each is cached and verified");
  cmd->add_option("--timeout", args.timeout_seconds, "seconds without a byte received before a download fails")
      ->check(CLI::PositiveNumber);
  cmd->callback([exit_code] {
    if (!args.list && args.names.empty())
      throw CLI::ValidationError("fetch", "give one or more dataset names, or --list to see them");
    run(exit_code, [] {
      if (args.list) return list_command(args);
      const data::FetchOptions o = fetch_options(args);
      for (const std::string& name : args.names)
        std::printf("%s\n", data::ensure_dataset(name, o).string().c_str());
    });
  });
}

}  // namespace mlabench::cli
