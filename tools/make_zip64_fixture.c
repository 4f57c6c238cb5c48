// Writes tests/data/archives/libarchive-zip64.zip: a zip in libarchive's zip64 dialect (zip64 extra fields and a
// zip64 end record forced), the second writer's dialect beside Python's that tests/harness/test_archive.cpp reads.
// The fixture is committed so the tests need only libarchive's reader (its writer pulls libxml2 and ICU into a static
// link on the GPU machine). Build and run on Debian: gcc tools/make_zip64_fixture.c -larchive -o /tmp/mkzip64 &&
// /tmp/mkzip64 tests/data/archives/libarchive-zip64.zip
#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  static char two[70000];
  memset(two, 't', sizeof two);
  const char* names[2] = {"z/one.txt", "z/two.txt"};
  const char* data[2] = {"one\n", two};
  const size_t sizes[2] = {4, sizeof two};
  struct archive* a = archive_write_new();
  archive_write_set_format_zip(a);
  if (archive_write_set_options(a, "zip:zip64") != ARCHIVE_OK ||
      archive_write_open_filename(a, argv[1]) != ARCHIVE_OK) {
    fprintf(stderr, "%s\n", archive_error_string(a));
    return 1;
  }
  for (int i = 0; i < 2; ++i) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, names[i]);
    archive_entry_set_mode(e, AE_IFREG | 0644);
    archive_entry_set_size(e, (la_int64_t)sizes[i]);
    archive_write_header(a, e);
    archive_write_data(a, data[i], sizes[i]);
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  return 0;
}
