// Gzip compression for tests that need .gz bytes and files of their own making.
#ifndef VERDICT_TESTS_CORE_DATA_GZIP_FOR_TEST_H_
#define VERDICT_TESTS_CORE_DATA_GZIP_FOR_TEST_H_

#include <zlib.h>

#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace verdict::testing {

// `text` as one gzip member, as `gzip` writes it.
inline std::string Gzip(const std::string& text) {
  z_stream stream{};
  EXPECT_EQ(deflateInit2(&stream, Z_BEST_SPEED, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY),
            Z_OK);
  std::string out(deflateBound(&stream, text.size()) + 32, '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  stream.avail_in = static_cast<uInt>(text.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&stream, Z_FINISH), Z_STREAM_END);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

inline void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  ASSERT_TRUE(out.good()) << path;
}

}  // namespace verdict::testing

#endif  // VERDICT_TESTS_CORE_DATA_GZIP_FOR_TEST_H_
