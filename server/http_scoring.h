// HttpScoring: scoring over HTTP/JSON on a port of its own (--http_port; off by default), for
// the RLHF stacks that call a reward model over HTTP. Served by civetweb (Debian
// libcivetweb-dev, the HTTP server prometheus-cpp's /metrics already runs on); every request
// goes through BatchScoring, so HTTP and gRPC share one batcher, one set of limits and one
// set of verdict_scoring_* series.
//
//   POST /get_reward   OpenRLHF's remote reward model (--remote_rm_url):
//                      {"query": ["<prompt and response, joined>", ...]}
//                      -> {"rewards": [...], "scores": [...]} (the same numbers under both
//                      names OpenRLHF versions read). Each query is a ScoreItem.text: scored as
//                      the model's input rule frames a joined text. The model is ?model=
//                      NAME[:VERSION|ALIAS], else --http_model. Other fields are ignored.
//   POST /v1/score     a ScoreBatchRequest in the proto's JSON mapping -> ScoreBatchResponse
//                      (JSON names in lowerCamelCase; either spelling is accepted).
//   GET  /health       200 while serving, 503 once draining.
//
// Plain HTTP only: Debian 12's civetweb looks up SSL_get_peer_certificate, which OpenSSL 3 no
// longer exports, and crashes on the first TLS request; so with TLS on gRPC the server refuses
// an HTTP port off loopback (terminate TLS in a proxy in front).
// Like gRPC: "Authorization: Bearer <token>" when the server has a token; a deadline from
// the "X-Request-Timeout-Ms" header (milliseconds); bodies up to --max_message_bytes. Errors
// are {"error": {"code": <http>, "status": "<gRPC code name>", "message": "..."}} with the
// HTTP status gRPC's code maps to (HttpStatusFor); 429 and 503 carry Retry-After.
// RPC series: verdict_rpc_requests_total{method="POST /get_reward"|"POST /v1/score"}.
//
// Thread safety: civetweb runs each request on one of --http_threads worker threads; a
// worker waits for its request's scores (the batcher runs them), so the thread count bounds
// the requests in flight over HTTP.
#ifndef VERDICT_SERVER_HTTP_SCORING_H_
#define VERDICT_SERVER_HTTP_SCORING_H_

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/auth.h"
#include "server/batch_scoring.h"
#include "server/server_config.h"
#include "server/server_metrics.h"

struct mg_context;
struct mg_connection;

namespace verdict::server {

// The HTTP status a gRPC status code is answered with (gRPC-Gateway's mapping): 400
// INVALID_ARGUMENT / FAILED_PRECONDITION / OUT_OF_RANGE, 401 UNAUTHENTICATED, 403
// PERMISSION_DENIED, 404 NOT_FOUND, 409 ALREADY_EXISTS / ABORTED, 429 RESOURCE_EXHAUSTED, 499
// CANCELLED, 501 UNIMPLEMENTED, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED, 500 otherwise.
int HttpStatusFor(absl::StatusCode code);

class HttpScoring {
 public:
  // Listens on config.http_host (else host):http_port (0 picks a free port). UNAVAILABLE naming the
  // address when it cannot. Collaborators must outlive the returned object.
  static absl::StatusOr<std::unique_ptr<HttpScoring>> Start(const ServerConfig& config,
                                                            const BatchScoring* scoring,
                                                            const Authenticator* auth,
                                                            ServerMetrics* metrics);
  // Stops listening and waits for the requests in flight.
  ~HttpScoring();

  HttpScoring(const HttpScoring&) = delete;
  HttpScoring& operator=(const HttpScoring&) = delete;

  int port() const { return port_; }
  // From now on new requests get 503 UNAVAILABLE (requests in flight complete).
  void Drain() { draining_ = true; }

 private:
  HttpScoring(const ServerConfig& config, const BatchScoring* scoring, const Authenticator* auth,
              ServerMetrics* metrics)
      : config_(config), scoring_(scoring), auth_(auth), metrics_(metrics) {}

  static int HandleRequest(mg_connection* connection, void* self);
  int Handle(mg_connection* connection);

  const ServerConfig config_;
  const BatchScoring* const scoring_;
  const Authenticator* const auth_;
  ServerMetrics* const metrics_;  // may be null
  mg_context* context_ = nullptr;
  int port_ = 0;
  std::atomic<bool> draining_{false};
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_HTTP_SCORING_H_
