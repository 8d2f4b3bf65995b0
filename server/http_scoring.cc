#include "server/http_scoring.h"

#include <civetweb.h>
#include <google/protobuf/util/json_util.h>

#include <cstring>
#include <map>
#include <utility>

#include "absl/strings/strip.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "core/util/status_macros.h"
#include "server/validation.h"

namespace verdict::server {
namespace {

constexpr char kTimeoutHeader[] = "X-Request-Timeout-Ms";
constexpr char kGetReward[] = "/get_reward";
constexpr char kScore[] = "/v1/score";
constexpr char kHealth[] = "/health";

// Messages may quote what a client sent (QuoteForMessage cuts it, but not at a UTF-8
// boundary): invalid UTF-8 becomes U+FFFD instead of failing the reply.
std::string Dump(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// A reply: the HTTP status and its JSON body.
struct Reply {
  int http = 200;
  std::string body;
  absl::StatusCode code = absl::StatusCode::kOk;  // for the RPC series

  static Reply Error(const absl::Status& status, int http = 0) {
    Reply reply;
    reply.code = status.code();
    reply.http = http != 0 ? http : HttpStatusFor(status.code());
    reply.body = Dump({{"error",
                        {{"code", reply.http},
                         {"status", absl::StatusCodeToString(status.code())},
                         {"message", std::string(status.message())}}}});
    return reply;
  }
};

void Send(mg_connection* connection, const Reply& reply) {
  mg_response_header_start(connection, reply.http);
  mg_response_header_add(connection, "Content-Type", "application/json", -1);
  const std::string length = absl::StrCat(reply.body.size());
  mg_response_header_add(connection, "Content-Length", length.c_str(), -1);
  if (reply.http == 429 || reply.http == 503) {
    mg_response_header_add(connection, "Retry-After", "1", -1);
  }
  mg_response_header_send(connection);
  mg_write(connection, reply.body.data(), reply.body.size());
}

// The body, at most `limit` bytes (413 beyond: no point reading a request that will be
// refused whole).
absl::StatusOr<std::string> ReadBody(mg_connection* connection, int64_t limit) {
  const mg_request_info* info = mg_get_request_info(connection);
  auto too_large = [limit] {
    return absl::ResourceExhaustedError(
        absl::StrCat("request body: over the server's limit of ", limit, " bytes"));
  };
  if (info->content_length > limit) return too_large();
  std::string body;
  if (info->content_length > 0) body.reserve(static_cast<size_t>(info->content_length));
  char buffer[64 << 10];
  for (;;) {
    const int n = mg_read(connection, buffer, sizeof buffer);
    if (n < 0) return absl::InvalidArgumentError("request body: could not be read");
    if (n == 0) break;
    if (static_cast<int64_t>(body.size()) + n > limit) return too_large();
    body.append(buffer, static_cast<size_t>(n));
  }
  return body;
}

absl::StatusOr<absl::Time> DeadlineOf(mg_connection* connection, absl::Time arrival) {
  const char* header = mg_get_header(connection, kTimeoutHeader);
  if (header == nullptr) return absl::InfiniteFuture();
  int64_t millis = 0;
  if (!absl::SimpleAtoi(header, &millis) || millis <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        kTimeoutHeader, ": must be a positive number of milliseconds, got ", QuoteForMessage(header)));
  }
  return arrival + absl::Milliseconds(millis);
}

// The ?model= of the URL, else the server's --http_model.
absl::StatusOr<v1::ModelRef> ModelOf(const mg_request_info& info, const std::string& fallback) {
  std::string spec = fallback;
  if (info.query_string != nullptr) {
    char value[256];
    const int n = mg_get_var(info.query_string, std::strlen(info.query_string), "model", value,
                             sizeof value);
    if (n == -2) return absl::InvalidArgumentError("model: longer than 255 bytes");
    if (n >= 0) spec.assign(value, static_cast<size_t>(n));
  }
  if (spec.empty()) {
    return absl::InvalidArgumentError(
        "model: none named: add ?model=NAME[:VERSION|ALIAS] to the URL, or start verdictd with "
        "--http_model");
  }
  v1::ModelRef ref = ParseModelSpec(spec);
  RETURN_IF_ERROR(ValidateModelRef("model", ref));
  return ref;
}

// OpenRLHF's {"query": [...]} as a request of text items.
absl::Status ParseGetReward(const std::string& body, int64_t max_items,
                            v1::ScoreBatchRequest* request) {
  const nlohmann::json json = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::InvalidArgumentError(
        "request body: must be a JSON object {\"query\": [\"<prompt and response>\", ...]}");
  }
  const auto query = json.find("query");
  if (query == json.end() || !query->is_array() || query->empty()) {
    return absl::InvalidArgumentError("query: must be a non-empty array of strings");
  }
  if (static_cast<int64_t>(query->size()) > max_items) {
    return absl::InvalidArgumentError(
        absl::StrCat("query: at most ", max_items, " texts per request, got ", query->size()));
  }
  for (size_t i = 0; i < query->size(); ++i) {
    const nlohmann::json& text = (*query)[i];
    if (!text.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("query[", i, "]: must be a string"));
    }
    request->add_items()->set_text(text.get<std::string>());
  }
  return absl::OkStatus();
}

// BatchScoring names the items of a /get_reward request "items[i].text"; the client sent them
// as "query[i]".
absl::Status AsQueryField(const absl::Status& status) {
  absl::string_view message = status.message();
  if (!absl::ConsumePrefix(&message, "items[")) return status;
  const size_t close = message.find(']');
  if (close == absl::string_view::npos) return status;
  absl::string_view rest = message.substr(close + 1);
  absl::ConsumePrefix(&rest, ".text");
  return absl::Status(status.code(), absl::StrCat("query[", message.substr(0, close), "]", rest));
}

}  // namespace

int HttpStatusFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

absl::StatusOr<std::unique_ptr<HttpScoring>> HttpScoring::Start(const ServerConfig& config,
                                                                const BatchScoring* scoring,
                                                                const Authenticator* auth,
                                                                ServerMetrics* metrics) {
  std::unique_ptr<HttpScoring> server(new HttpScoring(config, scoring, auth, metrics));
  const std::string address = absl::StrCat(
      config.http_host.empty() ? config.host : config.http_host, ":", config.http_port);
  const std::string threads = absl::StrCat(config.http_threads);
  const char* options[] = {"listening_ports", address.c_str(),
                           "num_threads", threads.c_str(),
                           "enable_keep_alive", "yes",
                           "tcp_nodelay", "1",
                           nullptr};
  mg_callbacks callbacks{};
  mg_init_data init{&callbacks, server.get(), options};
  unsigned error_code = 0;
  char error_text[256] = "";
  mg_error_data error{&error_code, error_text, sizeof error_text};
  server->context_ = mg_start2(&init, &error);
  if (server->context_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("--http_port: cannot listen on ", address, ": ", error_text));
  }
  mg_set_request_handler(server->context_, "/", &HttpScoring::HandleRequest, server.get());
  mg_server_port port{};
  if (mg_get_server_ports(server->context_, 1, &port) != 1) {
    return absl::UnavailableError(absl::StrCat("--http_port: no port bound on ", address));
  }
  server->port_ = port.port;
  return server;
}

HttpScoring::~HttpScoring() {
  if (context_ != nullptr) mg_stop(context_);
}

int HttpScoring::HandleRequest(mg_connection* connection, void* self) {
  return static_cast<HttpScoring*>(self)->Handle(connection);
}

int HttpScoring::Handle(mg_connection* connection) {
  const absl::Time arrival = absl::Now();
  const mg_request_info& info = *mg_get_request_info(connection);
  const absl::string_view path = info.local_uri != nullptr ? info.local_uri : "";
  const absl::string_view method = info.request_method != nullptr ? info.request_method : "";

  if (path == kHealth) {
    Send(connection, draining_ ? Reply::Error(absl::UnavailableError("draining"))
                               : Reply{200, R"({"status":"SERVING"})"});
    return draining_ ? 503 : 200;
  }
  const bool get_reward = path == kGetReward;
  if (!get_reward && path != kScore) {
    Reply reply = Reply::Error(absl::NotFoundError(absl::StrCat(
        "no such path; POST ", kGetReward, " or ", kScore, ", GET ", kHealth)));
    Send(connection, reply);
    return reply.http;
  }
  auto finish = [&](const Reply& reply) {
    Send(connection, reply);
    if (metrics_ != nullptr) {
      metrics_->RecordRpc(absl::StrCat("POST ", path), reply.code, absl::Now() - arrival);
    }
    return reply.http;
  };
  if (method != "POST") {
    return finish(Reply::Error(absl::InvalidArgumentError(absl::StrCat(path, ": POST only")), 405));
  }
  if (draining_) {
    scoring_->CountRefused(ScoringRejection::kShuttingDown);
    return finish(Reply::Error(
        absl::UnavailableError("the server is draining; retry on another replica")));
  }
  Authenticator::Metadata metadata;
  const char* authorization = mg_get_header(connection, "Authorization");
  if (authorization != nullptr) metadata.emplace("authorization", authorization);
  // The role ScoreBatch needs: HTTP scoring is ScoreBatch by another road.
  grpc::Status auth = auth_->Check("/verdict.v1.ScoringService/ScoreBatch", metadata,
                                   absl::StrCat("http:", info.remote_addr, ":", info.remote_port))
                          .status;
  if (!auth.ok()) {
    scoring_->CountRefused(ScoringRejection::kUnauthenticated);
    return finish(Reply::Error(absl::Status(static_cast<absl::StatusCode>(auth.error_code()),
                                            auth.error_message())));
  }

  v1::ScoreBatchRequest request;
  absl::StatusOr<absl::Time> deadline = DeadlineOf(connection, arrival);
  absl::StatusOr<std::string> body = ReadBody(connection, config_.max_message_bytes);
  absl::Status parsed = [&]() -> absl::Status {
    RETURN_IF_ERROR(deadline.status());
    RETURN_IF_ERROR(body.status());
    if (get_reward) {
      ASSIGN_OR_RETURN(*request.mutable_model(), ModelOf(info, config_.http_model));
      return ParseGetReward(*body, config_.max_items_per_request, &request);
    }
    auto json = google::protobuf::util::JsonStringToMessage(*body, &request);
    if (!json.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("request body: ", json.message().as_string()));
    }
    return absl::OkStatus();
  }();
  if (!parsed.ok()) {
    scoring_->CountRefused(ScoringRejection::kInvalid);
    const bool too_large = parsed.code() == absl::StatusCode::kResourceExhausted;
    return finish(Reply::Error(parsed, too_large ? 413 : 0));
  }

  v1::ScoreBatchResponse response;
  absl::Notification scored;
  absl::Status outcome;
  ScoringCall call;
  call.arrival = arrival;
  call.deadline = *deadline;
  call.done = [&outcome, &scored](absl::Status status) {
    outcome = std::move(status);
    scored.Notify();
  };
  scoring_->Score(&request, &response, std::move(call));
  scored.WaitForNotification();
  if (!outcome.ok()) return finish(Reply::Error(get_reward ? AsQueryField(outcome) : outcome));

  Reply reply;
  if (get_reward) {
    const std::vector<double> rewards(response.scores().begin(), response.scores().end());
    reply.body = Dump({{"rewards", rewards},
                       {"scores", rewards},
                       {"model", {{"name", response.model().name()},
                                  {"version", response.model().version()}}}});
  } else {
    auto json = google::protobuf::util::MessageToJsonString(response, &reply.body);
    if (!json.ok()) {
      return finish(Reply::Error(absl::InternalError(json.message().as_string())));
    }
  }
  return finish(reply);
}

}  // namespace verdict::server
