#!/usr/bin/env bash
# The GPU machine (Ubuntu 24.04, no package registry) lacks PCRE2's, utf8proc's, libseccomp's and libarchive's
# development files, and may lack OpenSSL's. This copies their headers and static libraries from this Debian machine into .carry/prefix (an
# ignored folder) with relocatable .pc files; pass "carry": [".carry"] to the device tool and
# tools/gpu/check.sh finds them (OpenSSL only where the machine has no headers of its own).
set -euo pipefail
cd "$(dirname "$0")/../.."
p=.carry/prefix
rm -rf "$p" && mkdir -p "$p/include" "$p/lib/pkgconfig"
cp /usr/include/pcre2.h /usr/include/utf8proc.h /usr/include/seccomp.h /usr/include/seccomp-syscalls.h "$p/include/"
cp /usr/lib/x86_64-linux-gnu/libpcre2-8.a /usr/lib/x86_64-linux-gnu/libutf8proc.a \
   /usr/lib/x86_64-linux-gnu/libseccomp.a "$p/lib/"
for pc in libpcre2-8 libutf8proc libseccomp; do
  sed -e 's|^prefix=.*|prefix=${pcfiledir}/../..|' -e 's|^libdir=.*|libdir=${prefix}/lib|' \
      -e 's|^includedir=.*|includedir=${prefix}/include|' -e 's|^exec_prefix=.*|exec_prefix=${prefix}|' \
      "/usr/lib/x86_64-linux-gnu/pkgconfig/$pc.pc" > "$p/lib/pkgconfig/$pc.pc"
done
# libarchive (dataset archives) as Debian's static library with the static codecs its zip/tar/gzip readers pull in
# (nettle, lzma, bz2, xml2); Debian has no static zstd, so its shared libzstd.so.1 is carried for the link and the
# GPU machine's own libzstd.so.1 (Ubuntu's base system has it) serves at run time.
cp /usr/include/archive.h /usr/include/archive_entry.h "$p/include/"
for l in libarchive liblzma libbz2 libxml2 libnettle; do cp "/usr/lib/x86_64-linux-gnu/$l.a" "$p/lib/"; done
cp -L /usr/lib/x86_64-linux-gnu/libzstd.so.1 "$p/lib/" && ln -sf libzstd.so.1 "$p/lib/libzstd.so"
cat > "$p/lib/pkgconfig/libarchive.pc" <<PC
prefix=\${pcfiledir}/../..
libdir=\${prefix}/lib
includedir=\${prefix}/include
Name: libarchive
Description: libarchive $(pkg-config --modversion libarchive) from Debian, static, carried by make_deps_prefix.sh
Version: $(pkg-config --modversion libarchive)
Cflags: -I\${includedir}
Libs: -L\${libdir} -larchive -lnettle -llzma -lbz2 -lxml2 -lzstd -lz -lm
PC
# OpenSSL (libcrypto only: SHA-256 for dataset and weight digests); Debian keeps two headers per architecture.
mkdir -p "$p/openssl/include" "$p/openssl/lib"
cp -r /usr/include/openssl "$p/openssl/include/"
cp /usr/include/x86_64-linux-gnu/openssl/*.h "$p/openssl/include/openssl/"
cp /usr/lib/x86_64-linux-gnu/libcrypto.a "$p/openssl/lib/"
# cpp-httplib (`mlabench serve`): Debian builds it as a shared library (libcpp-httplib.so, linked to OpenSSL 3, zlib
# and brotli). The library and brotli's shared libraries are carried; the .pc sets an RPATH (not RUNPATH, so that
# libcpp-httplib's own brotli dependencies resolve there too). Ubuntu 24.04 has libssl.so.3 and libz.so.1 itself.
mkdir -p "$p/httplib/include" "$p/httplib/lib"
cp /usr/include/httplib.h "$p/httplib/include/"
cp -r /usr/include/brotli "$p/httplib/include/"   # httplib.h includes brotli's and OpenSSL's headers
for l in libcpp-httplib.so.0.11 libbrotlicommon.so.1 libbrotlidec.so.1 libbrotlienc.so.1; do
  cp -L "/usr/lib/x86_64-linux-gnu/$l" "$p/httplib/lib/"
done
ln -sf libcpp-httplib.so.0.11 "$p/httplib/lib/libcpp-httplib.so"
cat > "$p/lib/pkgconfig/cpp-httplib.pc" <<PC
prefix=\${pcfiledir}/../../httplib
libdir=\${prefix}/lib
includedir=\${prefix}/include
Name: cpp-httplib
Description: cpp-httplib $(pkg-config --modversion cpp-httplib) from Debian, shared, carried by make_deps_prefix.sh
Version: $(pkg-config --modversion cpp-httplib)
Cflags: -I\${includedir} -I\${prefix}/../openssl/include -DCPPHTTPLIB_OPENSSL_SUPPORT -DCPPHTTPLIB_ZLIB_SUPPORT -DCPPHTTPLIB_BROTLI_SUPPORT
Libs: -L\${libdir} -lcpp-httplib -Wl,--disable-new-dtags,-rpath,\${libdir} -pthread
PC
du -sh "$p"
