#include "core/data/line_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace verdict {
namespace {

constexpr size_t kBufferBytes = size_t{64} << 10;

absl::Status ErrnoError(absl::string_view what, absl::string_view name, int error) {
  return absl::Status(absl::ErrnoToStatusCode(error),
                      absl::StrCat(what, " ", name, ": ", std::strerror(error)));
}

// Undecoded bytes, from a file descriptor or from memory.
class RawInput {
 public:
  virtual ~RawInput() = default;
  // Up to `size` bytes into `out`; 0 only at the end of the input.
  virtual absl::StatusOr<size_t> Read(char* out, size_t size) = 0;
};

class FileInput : public RawInput {
 public:
  FileInput(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~FileInput() override { ::close(fd_); }

  absl::StatusOr<size_t> Read(char* out, size_t size) override {
    while (true) {
      ssize_t n = ::read(fd_, out, size);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno != EINTR) return ErrnoError("cannot read", path_, errno);
    }
  }

 private:
  const int fd_;
  const std::string path_;
};

class MemoryInput : public RawInput {
 public:
  explicit MemoryInput(std::string contents) : contents_(std::move(contents)) {}

  absl::StatusOr<size_t> Read(char* out, size_t size) override {
    size_t n = std::min(size, contents_.size() - pos_);
    std::memcpy(out, contents_.data() + pos_, n);
    pos_ += n;
    return n;
  }

 private:
  const std::string contents_;
  size_t pos_ = 0;
};

}  // namespace

// Decoded bytes: the raw input as it is, or inflated when it starts with the gzip magic.
class LineReader::Source {
 public:
  explicit Source(std::unique_ptr<RawInput> raw)
      : raw_(std::move(raw)), in_(new char[kBufferBytes]) {}
  ~Source() {
    if (inflating_) inflateEnd(&stream_);
  }

  absl::StatusOr<size_t> Read(char* out, size_t size) {
    if (mode_ == Mode::kUndecided) {
      if (absl::Status s = Buffer(2); !s.ok()) return s;
      mode_ = StartsWithGzipMagic() ? Mode::kGzip : Mode::kPlain;
      if (mode_ == Mode::kGzip) {
        if (inflateInit2(&stream_, 16 + MAX_WBITS) != Z_OK) {
          return absl::ResourceExhaustedError("cannot start gzip decompression");
        }
        inflating_ = true;
      }
    }
    return mode_ == Mode::kPlain ? ReadPlain(out, size) : Inflate(out, size);
  }

 private:
  enum class Mode { kUndecided, kPlain, kGzip };

  size_t Buffered() const { return in_len_ - in_pos_; }

  bool StartsWithGzipMagic() const {
    return Buffered() >= 2 && static_cast<unsigned char>(in_[in_pos_]) == 0x1f &&
           static_cast<unsigned char>(in_[in_pos_ + 1]) == 0x8b;
  }

  // Makes at least `want` undecoded bytes available, fewer only at the end of the input.
  absl::Status Buffer(size_t want) {
    if (Buffered() >= want || raw_done_) return absl::OkStatus();
    std::memmove(in_.get(), in_.get() + in_pos_, Buffered());
    in_len_ = Buffered();
    in_pos_ = 0;
    while (in_len_ < want && !raw_done_) {
      absl::StatusOr<size_t> n = raw_->Read(in_.get() + in_len_, kBufferBytes - in_len_);
      if (!n.ok()) return n.status();
      if (*n == 0) raw_done_ = true;
      in_len_ += *n;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<size_t> ReadPlain(char* out, size_t size) {
    if (Buffered() > 0) {
      size_t n = std::min(size, Buffered());
      std::memcpy(out, in_.get() + in_pos_, n);
      in_pos_ += n;
      return n;
    }
    if (raw_done_) return 0;
    return raw_->Read(out, size);
  }

  absl::StatusOr<size_t> Inflate(char* out, size_t size) {
    while (true) {
      if (member_ended_) {
        // Another gzip member may follow (as `cat a.gz b.gz` makes); anything else is damage.
        if (absl::Status s = Buffer(2); !s.ok()) return s;
        if (Buffered() == 0) return 0;
        if (!StartsWithGzipMagic()) {
          return absl::InvalidArgumentError("unexpected bytes after the end of the gzip data");
        }
        inflateReset(&stream_);
        member_ended_ = false;
      }
      if (Buffered() == 0) {
        if (absl::Status s = Buffer(1); !s.ok()) return s;
        if (Buffered() == 0) return absl::InvalidArgumentError("gzip data ends early (truncated file?)");
      }
      stream_.next_in = reinterpret_cast<Bytef*>(in_.get() + in_pos_);
      stream_.avail_in = static_cast<uInt>(Buffered());
      stream_.next_out = reinterpret_cast<Bytef*>(out);
      stream_.avail_out = static_cast<uInt>(size);
      int result = inflate(&stream_, Z_NO_FLUSH);
      size_t consumed = Buffered() - stream_.avail_in;
      size_t produced = size - stream_.avail_out;
      in_pos_ += consumed;
      if (result == Z_STREAM_END) {
        member_ended_ = true;
      } else if (result != Z_OK && result != Z_BUF_ERROR) {
        return absl::InvalidArgumentError(
            absl::StrCat("corrupt gzip data: ", stream_.msg ? stream_.msg : "unknown error"));
      } else if (consumed == 0 && produced == 0 && Buffered() > 0) {
        return absl::InvalidArgumentError("corrupt gzip data: decompression makes no progress");
      }
      if (produced > 0) return produced;
    }
  }

  std::unique_ptr<RawInput> raw_;
  std::unique_ptr<char[]> in_;
  size_t in_pos_ = 0;
  size_t in_len_ = 0;
  bool raw_done_ = false;
  Mode mode_ = Mode::kUndecided;
  z_stream stream_{};
  bool inflating_ = false;
  bool member_ended_ = false;
};

absl::StatusOr<std::unique_ptr<LineReader>> LineReader::OpenFile(const std::string& path,
                                                                 size_t max_line_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("no such file: ", path));
    return ErrnoError("cannot open", path, errno);
  }
  struct stat info;
  if (::fstat(fd, &info) == 0 && S_ISDIR(info.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, " is a directory, not a file"));
  }
  auto source = std::make_unique<Source>(std::make_unique<FileInput>(fd, path));
  return std::unique_ptr<LineReader>(new LineReader(std::move(source), path, max_line_bytes));
}

std::unique_ptr<LineReader> LineReader::FromString(std::string contents, std::string name,
                                                   size_t max_line_bytes) {
  auto source = std::make_unique<Source>(std::make_unique<MemoryInput>(std::move(contents)));
  return std::unique_ptr<LineReader>(
      new LineReader(std::move(source), std::move(name), max_line_bytes));
}

LineReader::LineReader(std::unique_ptr<Source> source, std::string name, size_t max_line_bytes)
    : source_(std::move(source)),
      name_(std::move(name)),
      max_line_bytes_(max_line_bytes),
      chunk_(new char[kBufferBytes]) {}

LineReader::~LineReader() = default;

absl::StatusOr<bool> LineReader::Fill() {
  if (chunk_pos_ < chunk_len_) return true;
  if (end_of_input_) return false;
  absl::StatusOr<size_t> n = source_->Read(chunk_.get(), kBufferBytes);
  if (!n.ok()) return n.status();
  chunk_pos_ = 0;
  chunk_len_ = *n;
  if (*n == 0) end_of_input_ = true;
  return *n > 0;
}

absl::StatusOr<int> LineReader::SkipLeadingSpace() {
  if (!error_.ok()) return error_;
  while (true) {
    absl::StatusOr<bool> more = Fill();
    if (!more.ok()) {
      error_ = absl::Status(more.status().code(), absl::StrCat(name_, ":", line_number_ + 1, ": ",
                                                               more.status().message()));
      return error_;
    }
    if (!*more) return -1;
    const char c = chunk_[chunk_pos_];
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return static_cast<unsigned char>(c);
    if (c == '\n') ++line_number_;
    ++chunk_pos_;
  }
}

absl::StatusOr<absl::string_view> LineReader::NextBytes() {
  if (!error_.ok()) return error_;
  absl::StatusOr<bool> more = Fill();
  if (!more.ok()) {
    error_ = absl::Status(more.status().code(), absl::StrCat(name_, ": ", more.status().message()));
    return error_;
  }
  if (!*more) return absl::string_view();
  absl::string_view bytes(chunk_.get() + chunk_pos_, chunk_len_ - chunk_pos_);
  chunk_pos_ = chunk_len_;
  return bytes;
}

absl::StatusOr<bool> LineReader::Next(TextLine* line) {
  if (!error_.ok()) return error_;
  line_.clear();
  bool too_long = false;
  bool started = false;  // a byte or a "\n" of this line has been seen
  while (true) {
    if (chunk_pos_ == chunk_len_) {
      absl::StatusOr<bool> more = Fill();
      if (!more.ok()) {
        error_ = absl::Status(more.status().code(), absl::StrCat(name_, ":", line_number_ + 1, ": ",
                                                                 more.status().message()));
        return error_;
      }
      if (!*more) break;
    }
    started = true;
    const char* begin = chunk_.get() + chunk_pos_;
    const size_t available = chunk_len_ - chunk_pos_;
    const char* newline = static_cast<const char*>(std::memchr(begin, '\n', available));
    const size_t take = newline ? static_cast<size_t>(newline - begin) : available;
    if (!too_long) {
      if (line_.size() + take > max_line_bytes_) {
        // Keep reading to the end of the line, but stop holding it.
        too_long = true;
        std::string().swap(line_);
      } else {
        line_.append(begin, take);
      }
    }
    chunk_pos_ += take;
    if (newline) {
      ++chunk_pos_;
      break;
    }
  }
  if (!started) return false;
  if (!line_.empty() && line_.back() == '\r') line_.pop_back();
  line->text = line_;
  line->number = ++line_number_;
  line->too_long = too_long;
  return true;
}

}  // namespace verdict
