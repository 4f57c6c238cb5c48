// Archive extraction (harness/data/archive.h) against archives made here at run time and one committed fixture
// (libarchive's zip64 dialect): what must extract (zip members with any permission bits, as Python's
// zipfile.writestr writes them; zip64; a folder listed twice) and what must be refused with a message naming the
// archive, the member and the rule or limit: path traversal, links, devices and FIFOs, overlapping members, expansion
// past each cap (counted as written, whatever the header claims), and paths already in the destination. After every
// refusal the destination holds exactly what it held before: no member, no temporary folder.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/digest.h"
#include "harness/data/archive.h"
#include "harness/data/fetch.h"
#include "mlabench/result.h"
#include "tests/harness/fetch_test_archives.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace mlabench::data;
using mlabench::test::ArchiveMember;
using mlabench::test::error_of;
using mlabench::test::gzip_bytes;
using mlabench::test::make_tar;
using mlabench::test::make_zip;

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << bytes;
}

// Every path under `dir`, relative, folders with a trailing '/'.
std::set<std::string> listing(const fs::path& dir) {
  std::set<std::string> out;
  for (const fs::directory_entry& e : fs::recursive_directory_iterator(dir))
    out.insert(fs::relative(e.path(), dir).generic_string() + (e.is_directory() ? "/" : ""));
  return out;
}

class ArchiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::temp_directory_path() / ("mlabench_test_archive_" + std::to_string(::getpid()) + "_" + info->name());
    dest_ = root_ / "dest";
    fs::remove_all(root_);
    fs::create_directories(dest_);
    write_file(dest_ / "keep.txt", "kept\n");  // what the destination held before: must survive every refusal
  }
  void TearDown() override { fs::remove_all(root_); }

  // Writes `bytes` as root_/file and extracts it into dest_.
  int64_t extract(const std::string& file, const std::string& bytes, ArchiveKind kind,
                  const ArchiveLimits& limits = {}) {
    write_file(root_ / file, bytes);
    return extract_archive(root_ / file, kind, dest_, limits);
  }

  // Extraction must fail with every part in its message and leave dest_ as it was.
  void expect_refused(const std::string& file, const std::string& bytes, ArchiveKind kind,
                      const std::vector<std::string>& parts, const ArchiveLimits& limits = {}) {
    const std::string e = error_of([&] { extract(file, bytes, kind, limits); });
    ASSERT_FALSE(e.empty()) << file << " was extracted";
    EXPECT_NE(e.find((root_ / file).string()), std::string::npos) << "the message must name the archive: " << e;
    for (const std::string& part : parts) EXPECT_NE(e.find(part), std::string::npos) << file << ": " << e;
    EXPECT_NE(e.find("HINT"), std::string::npos) << e;
    EXPECT_EQ(listing(dest_), std::set<std::string>{"keep.txt"}) << file << " left something behind";
    EXPECT_EQ(read_file(dest_ / "keep.txt"), "kept\n");
  }

  fs::path root_, dest_;
};

}  // namespace

TEST_F(ArchiveTest, ZipMembersWithAnyPermissionBitsAreRegularFiles) {
  // 0600 without type bits is what zipfile.writestr writes (`zinfo.external_attr = 0o600 << 16`); 0 and a bare
  // type with no permission bits are other writers' spellings. The file type decides, not the permissions.
  const std::string zip = make_zip({{.name = "writestr.txt", .data = "py\n", .zip_mode = 0600},
                                    {.name = "none.txt", .data = "none\n", .zip_mode = 0},
                                    {.name = "noperm.txt", .data = "noperm\n", .zip_mode = 0100000},
                                    {.name = "all.txt", .data = "all\n", .zip_mode = 0100777},
                                    {.name = "sub/", .data = "", .zip_mode = 0700},
                                    {.name = "sub/in.txt", .data = "in\n", .zip_mode = 0400}});
  EXPECT_EQ(extract("perm.zip", zip, ArchiveKind::ZIP), 5);
  EXPECT_EQ(read_file(dest_ / "writestr.txt"), "py\n");
  EXPECT_EQ(read_file(dest_ / "none.txt"), "none\n");
  EXPECT_EQ(read_file(dest_ / "noperm.txt"), "noperm\n");
  EXPECT_EQ(read_file(dest_ / "all.txt"), "all\n");
  EXPECT_EQ(read_file(dest_ / "sub" / "in.txt"), "in\n");  // readable: archive permission bits are not applied
  EXPECT_EQ(listing(dest_), (std::set<std::string>{"keep.txt", "writestr.txt", "none.txt", "noperm.txt", "all.txt",
                                                   "sub/", "sub/in.txt"}));
}

// The real thing: a zip from Python's zipfile (writestr's 0600 members, a folder), and one where zipfile writes
// zip64 records for every member (its ZIP64_LIMIT lowered), when python3 is installed.
TEST_F(ArchiveTest, PythonZipfileArchivesExtract) {
  const char* python = std::getenv("MLABENCH_PYTHON") ? std::getenv("MLABENCH_PYTHON") : "python3";
  if (std::system((std::string(python) + " -c pass >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << "no " << python << " to write the zips with";
  write_file(root_ / "make.py",
             "import sys, zipfile\n"
             "with zipfile.ZipFile(sys.argv[1] + '/py.zip', 'w', zipfile.ZIP_DEFLATED) as z:\n"
             "    z.writestr('data/a.csv', 'x,y\\n' * 100)\n"
             "    z.writestr('data/', '')\n"
             "    z.writestr('b.txt', 'b\\n')\n"
             "zipfile.ZIP64_LIMIT = 1\n"
             "with zipfile.ZipFile(sys.argv[1] + '/py64.zip', 'w', zipfile.ZIP_DEFLATED) as z:\n"
             "    z.writestr('big/c.txt', 'c' * 5000)\n");
  ASSERT_EQ(std::system((std::string(python) + " " + (root_ / "make.py").string() + " " + root_.string()).c_str()), 0);
  EXPECT_EQ(extract_archive(root_ / "py.zip", ArchiveKind::ZIP, dest_), 2);
  std::string expected_csv;
  for (int i = 0; i < 100; ++i) expected_csv += "x,y\n";
  EXPECT_EQ(read_file(dest_ / "data" / "a.csv"), expected_csv);
  EXPECT_EQ(read_file(dest_ / "b.txt"), "b\n");
  const std::string zip64 = read_file(root_ / "py64.zip");
  ASSERT_NE(zip64.find("PK\x06\x06"), std::string::npos) << "python wrote no zip64 end record";
  EXPECT_EQ(extract_archive(root_ / "py64.zip", ArchiveKind::ZIP, dest_), 1);
  EXPECT_EQ(read_file(dest_ / "big" / "c.txt"), std::string(5000, 'c'));
}

// libarchive's own zip64 dialect (zip64 extra fields in every header and a zip64 end record), from the committed
// fixture tools/make_zip64_fixture.c writes: the tests need only libarchive's reader.
TEST_F(ArchiveTest, Zip64ArchiveExtracts) {
  const std::string zip = read_file(fs::path(MLABENCH_TEST_DATA) / "archives" / "libarchive-zip64.zip");
  ASSERT_NE(zip.find("PK\x06\x06"), std::string::npos) << "the fixture has no zip64 end record";
  EXPECT_EQ(sniff_archive_kind((write_file(root_ / "z64.zip", zip), root_ / "z64.zip")), ArchiveKind::ZIP);
  EXPECT_EQ(extract_archive(root_ / "z64.zip", ArchiveKind::ZIP, dest_), 2);
  EXPECT_EQ(read_file(dest_ / "z" / "one.txt"), "one\n");
  EXPECT_EQ(read_file(dest_ / "z" / "two.txt"), std::string(70000, 't'));
}

TEST_F(ArchiveTest, TarDialectsAndGzipExtract) {
  // A folder listed twice and a "./" root entry are harmless; a gzip'd tar and a lone gzip go through filters.
  const std::string tar = make_tar({{"./", "", true, '5'},
                                    {"t/", "", true, '5'},
                                    {"t/", "", true, '5'},
                                    {"t/one.txt", "one\n"},
                                    {"t/cont.txt", "contiguous\n", true, '7'}});
  EXPECT_EQ(extract("t.tar.gz", gzip_bytes(tar), ArchiveKind::TAR_GZ), 2);
  EXPECT_EQ(read_file(dest_ / "t" / "one.txt"), "one\n");
  EXPECT_EQ(read_file(dest_ / "t" / "cont.txt"), "contiguous\n");
  EXPECT_EQ(sniff_archive_kind(root_ / "t.tar.gz"), ArchiveKind::TAR_GZ);
  EXPECT_EQ(extract("rows.jsonl.gz", gzip_bytes("{\"a\": 1}\n"), ArchiveKind::GZIP), 1);
  EXPECT_EQ(read_file(dest_ / "rows.jsonl"), "{\"a\": 1}\n");
  EXPECT_EQ(sniff_archive_kind(root_ / "rows.jsonl.gz"), ArchiveKind::GZIP);
}

TEST_F(ArchiveTest, PathTraversalIsRefused) {
  for (std::string name : {"../evil.txt", "/tmp/evil.txt", "a/../../evil.txt", "..\\evil.txt", "C:/evil.txt"}) {
    const std::string zip = make_zip({{"ok.txt", "ok"}, {name, "pwned"}});
    std::replace(name.begin(), name.end(), '\\', '/');  // libarchive reads a zip's backslash as '/'
    expect_refused("slip.zip", zip, ArchiveKind::ZIP, {"member '" + name + "'", "refused", "outside the destination"});
  }
  expect_refused("slip.tar", make_tar({{"ok.txt", "ok"}, {"a/../../evil.txt", "pwned"}}), ArchiveKind::TAR,
                 {"member 'a/../../evil.txt' has a '..' component; refused"});
  EXPECT_FALSE(fs::exists(root_ / "evil.txt"));
}

TEST_F(ArchiveTest, LinksDevicesAndFifosAreRefusedByFileType) {
  struct Case {
    ArchiveMember member;
    std::string says;
  };
  const std::vector<Case> tar_cases = {
      {{.name = "hard", .tar_type = '1', .tar_link = "ok.txt"}, "member 'hard' is a hard link to 'ok.txt'"},
      {{.name = "soft", .tar_type = '2', .tar_link = "/etc/passwd"},
       "member 'soft' is a symbolic link to '/etc/passwd'"},
      {{.name = "chr", .tar_type = '3'}, "member 'chr' is a character device"},
      {{.name = "blk", .tar_type = '4'}, "member 'blk' is a block device"},
      {{.name = "fifo", .tar_type = '6'}, "member 'fifo' is a FIFO (named pipe)"},
  };
  for (const Case& c : tar_cases)
    expect_refused("links.tar", make_tar({{"ok.txt", "ok"}, c.member}), ArchiveKind::TAR, {c.says, "refused"});
  expect_refused("link.zip", make_zip({{"ok.txt", "ok"}, {.name = "lnk", .data = "/etc/passwd", .zip_mode = 0120777}}),
                 ArchiveKind::ZIP, {"member 'lnk' is a symbolic link to '/etc/passwd'; refused"});
  expect_refused("device.zip", make_zip({{.name = "c", .data = "", .zip_mode = 0020644}}), ArchiveKind::ZIP,
                 {"member 'c' is a character device; refused"});
}

TEST_F(ArchiveTest, OverlappingMembersAreRefusedNamingBoth) {
  expect_refused("dup.zip", make_zip({{"a/b.txt", "first"}, {"a//b.txt", "second"}}), ArchiveKind::ZIP,
                 {"members 'a/b.txt' and 'a//b.txt' both write 'a/b.txt'; duplicate members refused"});
  expect_refused("same.zip", make_zip({{"x.txt", "first"}, {"x.txt", "second"}}), ArchiveKind::ZIP,
                 {"members 'x.txt' and 'x.txt' both write 'x.txt'"});
  expect_refused(
      "file_then_inside.zip", make_zip({{"x", "file"}, {"x/y", "inner"}}), ArchiveKind::ZIP,
      {"member 'x/y' needs 'x' to be a folder, but member 'x' is a file there; overlapping members refused"});
  expect_refused("inside_then_file.zip", make_zip({{"x/y", "inner"}, {"x", "file"}}), ArchiveKind::ZIP,
                 {"member 'x' is a file at 'x', but member 'x/y' needs 'x' to be a folder"});
  expect_refused("dir_then_file.tar", make_tar({{"x/", "", true, '5'}, {"x", "file"}}), ArchiveKind::TAR,
                 {"member 'x' is a file at 'x', but member 'x/' needs 'x' to be a folder"});
  expect_refused("file_then_dir.tar", make_tar({{"x", "file"}, {"x/", "", true, '5'}}), ArchiveKind::TAR,
                 {"members 'x' and 'x/' both write 'x'"});
}

TEST_F(ArchiveTest, ExpansionCapsStopWhileWriting) {
  const std::string zeros(8 << 20, '\0');  // deflates to about 8 KB
  ArchiveLimits member_cap;
  member_cap.max_member_bytes = 1 << 20;
  expect_refused("bomb.zip", make_zip({{"ok.txt", "ok"}, {"big.bin", zeros}}), ArchiveKind::ZIP,
                 {"member 'big.bin' expands past the per-member limit of 1048576 bytes (1 MiB; its header says "
                  "8388608 bytes); refused"},
                 member_cap);
  // The header claims 1000 bytes: the count of bytes written, not the claim, stops it.
  expect_refused("liar.zip", make_zip({{.name = "liar.bin", .data = zeros, .zip_claimed_size = 1000}}),
                 ArchiveKind::ZIP,
                 {"member 'liar.bin' expands past the per-member limit of 1048576 bytes (1 MiB; "
                  "its header says 1000 bytes)"},
                 member_cap);
  expect_refused("bomb.bin.gz", gzip_bytes(zeros), ArchiveKind::GZIP,
                 {"member 'bomb.bin' expands past the per-member limit of 1048576 bytes"}, member_cap);
  expect_refused("bomb.tar.gz", gzip_bytes(make_tar({{"z.bin", zeros}})), ArchiveKind::TAR_GZ,
                 {"member 'z.bin' expands past the per-member limit"}, member_cap);

  ArchiveLimits total_cap;
  total_cap.max_total_bytes = 1 << 20;
  const std::string chunk(300 << 10, 'x');
  expect_refused("many.zip", make_zip({{"a", chunk}, {"b", chunk}, {"c", chunk}, {"d", chunk}}), ArchiveKind::ZIP,
                 {"member 'd' takes the archive past the limit of 1048576 bytes (1 MiB) for all members together"},
                 total_cap);

  ArchiveLimits count_cap;
  count_cap.max_members = 10;
  std::vector<ArchiveMember> members;
  for (int i = 0; i < 12; ++i) members.push_back({"f" + std::to_string(i) + ".txt", "x"});
  expect_refused("count.tar", make_tar(members), ArchiveKind::TAR,
                 {"member 'f10.txt' is number 11, past the limit of 10 members; refused"}, count_cap);
  members.resize(10);
  EXPECT_EQ(extract("ten.tar", make_tar(members), ArchiveKind::TAR, count_cap), 10);  // the limit itself is allowed
}

TEST_F(ArchiveTest, DefaultLimitsFitTheRealDatasetsWithRoom) {
  // The largest archive in datasets_manifest (mmlu.zip): 177 members, 7,186,856 bytes, its largest member
  // 1,867,637 bytes. The defaults must hold 100x that, and stop a 3 GiB bomb (issue 17) well before 3 GiB.
  const ArchiveLimits d;
  EXPECT_GE(d.max_members, 100 * 177);
  EXPECT_GE(d.max_total_bytes, 100 * int64_t{7186856});
  EXPECT_GE(d.max_member_bytes, 100 * int64_t{1867637});
  EXPECT_LT(d.max_total_bytes, int64_t{3} << 30);
}

TEST_F(ArchiveTest, PathsAlreadyInTheDestinationAreNotReplaced) {
  expect_refused("clobber.zip", make_zip({{"new.txt", "new"}, {"keep.txt", "replaced"}}), ArchiveKind::ZIP,
                 {"its path 'keep.txt' would replace " + (dest_ / "keep.txt").string(), "refused"});
  // An archive holding a member with its own name would overwrite itself.
  fs::create_directories(root_ / "self");
  write_file(root_ / "self" / "self.zip", make_zip({{"self.zip", "not me"}}));
  const std::string e =
      error_of([&] { extract_archive(root_ / "self" / "self.zip", ArchiveKind::ZIP, root_ / "self"); });
  EXPECT_NE(e.find("its path 'self.zip' would replace"), std::string::npos) << e;
  EXPECT_EQ(listing(root_ / "self"), std::set<std::string>{"self.zip"});
  // Folders merge: a second archive may add to a folder the first made.
  EXPECT_EQ(extract("one.zip", make_zip({{"d/1.txt", "1"}}), ArchiveKind::ZIP), 1);
  EXPECT_EQ(extract("two.zip", make_zip({{"d/2.txt", "2"}}), ArchiveKind::ZIP), 1);
  EXPECT_EQ(listing(dest_), (std::set<std::string>{"keep.txt", "d/", "d/1.txt", "d/2.txt"}));
}

TEST_F(ArchiveTest, CorruptMembersAreRefused) {
  std::string zip =
      make_zip({{"ok.txt", "ok"}, {.name = "data.txt", .data = std::string(1000, 'd'), .deflate = false}});
  zip[zip.find(std::string(1000, 'd')) + 10] = 'X';  // a stored member's byte flipped: its CRC-32 no longer matches
  expect_refused("crc.zip", zip, ArchiveKind::ZIP, {"member 'data.txt' is corrupt", "CRC"});
  const std::string tgz = gzip_bytes(make_tar({{"t.txt", std::string(5000, 't')}}));
  expect_refused("cut.tar.gz", tgz.substr(0, tgz.size() / 2), ArchiveKind::TAR_GZ, {"truncated gzip input"});
  expect_refused("wrong.zip", gzip_bytes("x"), ArchiveKind::ZIP,
                 {"to be extracted as zip, but its first bytes say gzip"});
}

// Through the dataset fetcher: a refused archive leaves nothing of the dataset in the cache, and the limits come
// from FetchOptions.
TEST_F(ArchiveTest, FetchRefusalLeavesNothingInTheCache) {
  const fs::path mirror = root_ / "mirror";
  const std::string zip = make_zip({{"x", "file"}, {"x/y", "inner"}});
  write_file(mirror / "hostile" / "h.zip", zip);
  const nlohmann::json m = {{"name", "hostile"},
                            {"version", "1"},
                            {"description", "x then x/y"},
                            {"license", "MIT"},
                            {"homepage", "http://127.0.0.1/"},
                            {"format", "text"},
                            {"splits", {{"test", {{"rows", 1}, {"files", {"x"}}}}}},
                            {"files", {{{"path", "h.zip"}, {"sha256", sha256_hex(zip)}, {"extract", "zip"}}}},
                            {"digest_files", {"x"}},
                            {"content_sha256", sha256_hex("x")}};
  fs::create_directories(root_ / "manifests");
  std::ofstream(root_ / "manifests" / "hostile.json") << m.dump(2);
  FetchOptions o;
  o.cache_dir = root_ / "cache";
  o.manifests_dir = root_ / "manifests";
  o.mirror = mirror.string();
  o.allow_network = false;
  const std::string e = error_of([&] { ensure_dataset("hostile", o); });
  EXPECT_NE(e.find("member 'x/y' needs 'x' to be a folder, but member 'x' is a file there"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(o.cache_dir / "hostile"));
  EXPECT_FALSE(fs::exists(o.cache_dir / ".staging" / "hostile"));

  // The same fetcher with a member cap below an honest archive's member.
  const std::string big = make_zip({{"x", std::string(4096, 'x')}});
  write_file(mirror / "hostile" / "h.zip", big);
  nlohmann::json m2 = m;
  m2["files"][0]["sha256"] = sha256_hex(big);
  std::ofstream(root_ / "manifests" / "hostile.json") << m2.dump(2);
  o.archive_limits.max_member_bytes = 1024;
  const std::string capped = error_of([&] { ensure_dataset("hostile", o); });
  EXPECT_NE(capped.find("per-member limit of 1024 bytes"), std::string::npos) << capped;
  EXPECT_FALSE(fs::exists(o.cache_dir / "hostile"));
}

// A run killed during or after extraction leaves members and an extraction's temporary folder in the staging
// folder. The next run must neither trip over them (extraction never replaces a file) nor carry them into the
// dataset folder.
TEST_F(ArchiveTest, FetchPrunesWhatAnInterruptedRunLeftInStaging) {
  const fs::path mirror = root_ / "mirror";
  const std::string zip = make_zip({{"d/x.txt", "x\n"}});
  write_file(mirror / "ds" / "ds.zip", zip);
  const nlohmann::json m = {{"name", "ds"},
                            {"version", "1"},
                            {"description", "one zip"},
                            {"license", "MIT"},
                            {"homepage", "http://127.0.0.1/"},
                            {"format", "text"},
                            {"splits", {{"test", {{"rows", 1}, {"files", {"d/x.txt"}}}}}},
                            {"files", {{{"path", "ds.zip"}, {"sha256", sha256_hex(zip)}, {"extract", "zip"}}}},
                            {"digest_files", {"d/*.txt"}},
                            {"content_sha256", sha256_hex("d/x.txt\t" + sha256_hex("x\n") + "\n")}};
  fs::create_directories(root_ / "manifests");
  std::ofstream(root_ / "manifests" / "ds.json") << m.dump(2);
  FetchOptions o;
  o.cache_dir = root_ / "cache";
  o.manifests_dir = root_ / "manifests";
  o.mirror = mirror.string();
  o.allow_network = false;
  const fs::path staging = o.cache_dir / ".staging" / "ds";
  write_file(staging / "ds.zip", zip);                                     // kept: the manifest's file
  write_file(staging / "d" / "x.txt", "stale\n");                          // a member from the interrupted run
  write_file(staging / ".ds.zip.extracting-abc123" / "d" / "y.txt", "y");  // its temporary folder
  const fs::path dir = ensure_dataset("ds", o);
  EXPECT_EQ(read_file(dir / "d" / "x.txt"), "x\n");
  EXPECT_EQ(listing(dir), (std::set<std::string>{".verified.json", "ds.zip", "d/", "d/x.txt"}));
}
