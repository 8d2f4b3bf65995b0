#include "tests/testing/loopback_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace verdict::testing {
namespace {

// Closes the socket on every return path.
class Socket {
 public:
  Socket() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {}
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }

 private:
  const int fd_;
};

sockaddr_in Loopback(int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

absl::Status Errno(absl::string_view what, int port) {
  return absl::UnavailableError(
      absl::StrCat(what, " 127.0.0.1:", port, ": ", std::strerror(errno)));
}

}  // namespace

absl::StatusOr<HttpResponse> HttpGet(int port, const std::string& target, absl::Duration timeout,
                                     const std::string& extra_headers) {
  Socket socket;
  if (socket.fd() < 0) return Errno("socket for", port);
  // The timeouts bound each send and receive; with the deadline below they bound the call.
  const absl::Time deadline = absl::Now() + timeout;
  const timeval tv = absl::ToTimeval(timeout);
  ::setsockopt(socket.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(socket.fd(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  const sockaddr_in address = Loopback(port);
  if (::connect(socket.fd(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    return Errno("connect to", port);
  }
  const std::string request = absl::StrCat("GET ", target, " HTTP/1.0\r\nHost: 127.0.0.1:", port,
                                           "\r\nAccept: */*\r\nConnection: close\r\n",
                                           extra_headers, "\r\n");
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t n =
        ::send(socket.fd(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return Errno("send to", port);
    sent += static_cast<size_t>(n);
  }
  std::string response;
  char buffer[16384];
  while (true) {
    const ssize_t n = ::recv(socket.fd(), buffer, sizeof(buffer), 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno(errno == EAGAIN ? "timed out reading from" : "recv from", port);
    }
    response.append(buffer, static_cast<size_t>(n));
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "GET ", target, " from port ", port, " took over ", absl::FormatDuration(timeout)));
    }
  }

  const size_t header_end = response.find("\r\n\r\n");
  if (header_end == std::string::npos) {
    return absl::DataLossError(
        absl::StrCat("GET ", target, ": no end of headers in \"", response.substr(0, 200), "\""));
  }
  const size_t status_line_end = response.find("\r\n");
  HttpResponse result;
  const std::string status_line = response.substr(0, status_line_end);
  // "HTTP/1.x 200 OK"
  const size_t space = status_line.find(' ');
  if (!absl::StartsWith(status_line, "HTTP/") || space == std::string::npos ||
      !absl::SimpleAtoi(status_line.substr(space + 1, 3), &result.status_code)) {
    return absl::DataLossError(
        absl::StrCat("GET ", target, ": bad status line \"", status_line, "\""));
  }
  result.headers = response.substr(status_line_end + 2, header_end - status_line_end - 2);
  if (absl::StrContains(absl::AsciiStrToLower(result.headers), "transfer-encoding: chunked")) {
    return absl::DataLossError(
        absl::StrCat("GET ", target, ": chunked reply to an HTTP/1.0 request"));
  }
  result.body = response.substr(header_end + 4);
  return result;
}

int PickFreeLoopbackPort() {
  Socket socket;
  if (socket.fd() < 0) return 0;
  sockaddr_in address = Loopback(0);
  if (::bind(socket.fd(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0)
    return 0;
  socklen_t length = sizeof(address);
  if (::getsockname(socket.fd(), reinterpret_cast<sockaddr*>(&address), &length) != 0) return 0;
  return ntohs(address.sin_port);
}

std::string UrlEncode(absl::string_view text) {
  std::string encoded;
  for (const char c : text) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      encoded.push_back(c);
    } else {
      absl::StrAppendFormat(&encoded, "%%%02X", static_cast<unsigned char>(c));
    }
  }
  return encoded;
}

}  // namespace verdict::testing
