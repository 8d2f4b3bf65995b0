// Plain HTTP/1.0 GETs to servers on 127.0.0.1, for tests that read /metrics and Prometheus's
// HTTP API exactly as a scraper or a dashboard would, with no HTTP library in between.
//
// HTTP/1.0 keeps it small: the server sends one response without chunking and closes the
// connection. Every call is bounded by a timeout, so a server that hangs fails the test
// instead of stalling it.
//
// Thread safety: the functions are thread-safe.
#ifndef VERDICT_TESTS_TESTING_LOOPBACK_HTTP_H_
#define VERDICT_TESTS_TESTING_LOOPBACK_HTTP_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace verdict::testing {

struct HttpResponse {
  int status_code = 0;  // 200, 503, ...
  std::string headers;  // the header lines as received, status line excluded
  std::string body;
};

// GET http://127.0.0.1:<port><target>, e.g. target "/metrics" or "/api/v1/query?query=up".
// Any complete response is returned whatever its status code; errors are for connections
// refused, timeouts and malformed responses. `extra_headers`: more header lines, each ending
// in "\r\n" (e.g. "Authorization: Basic ...\r\n").
absl::StatusOr<HttpResponse> HttpGet(int port, const std::string& target,
                                     absl::Duration timeout = absl::Seconds(10),
                                     const std::string& extra_headers = "");

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0 and released), for
// programs that cannot pick their own and report it. Another process may take it before the
// caller does; callers retry on "address in use". 0 if no socket could be bound.
int PickFreeLoopbackPort();

// Percent-encodes everything but RFC 3986's unreserved characters, for query parameters.
std::string UrlEncode(absl::string_view text);

}  // namespace verdict::testing

#endif  // VERDICT_TESTS_TESTING_LOOPBACK_HTTP_H_
