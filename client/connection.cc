#include "client/connection.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <chrono>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/local_file.h"

namespace verdict::client {

GlobalOptions GlobalOptions::FromEnvironment() {
  GlobalOptions options;
  if (const char* server = std::getenv("VERDICT_SERVER"); server != nullptr && *server != '\0') {
    options.server = server;
  }
  if (const char* token = std::getenv("VERDICT_TOKEN"); token != nullptr) options.token = token;
  return options;
}

void GlobalOptions::AddFlags(FlagParser& flags) {
  flags.AddSection("Global flags:");
  flags.AddString("server", &server, "HOST:PORT",
                  "verdictd's address (default $VERDICT_SERVER, or localhost:50051);\n"
                  "dns:///HOST:PORT balances requests over every address of the\n"
                  "name (a Kubernetes headless Service).");
  flags.AddBool("tls", &tls, "Connect with TLS.");
  flags.AddString("ca", &ca_file, "FILE",
                  "PEM root certificates for --tls (default: system roots).");
  flags.AddString("tls-server-name", &tls_server_name, "NAME",
                  "Name expected in the server's certificate (default: the host).");
  flags.AddString("tls-cert", &tls_cert_file, "FILE",
                  "PEM client certificate (chain), for a server started with\n--tls_client_ca.");
  flags.AddString("tls-key", &tls_key_file, "FILE", "PEM private key of --tls-cert.");
  flags.AddString(
      "token", &token, "TOKEN",
      "Bearer token, for a server started with --token_file\n(default $VERDICT_TOKEN).");
  flags.AddString("output", &output, "text|json",
                  "text (default), or json: the API's messages in the proto3\nJSON mapping.");
  flags.AddDouble("timeout", &timeout_seconds, "SECONDS",
                  "Deadline of each request (default 30; 0: none). Watching and\n"
                  "uploading are not limited.");
}

absl::Status GlobalOptions::Validate() const {
  if (output != "text" && output != "json") {
    return absl::InvalidArgumentError(
        absl::StrCat("--output: expected text or json, got '", output, "'"));
  }
  if (!(timeout_seconds >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--timeout: must be >= 0 seconds, got ", timeout_seconds));
  }
  if (server.empty()) return absl::InvalidArgumentError("--server: must not be empty");
  if (!ca_file.empty() && !tls) {
    return absl::InvalidArgumentError("--ca: only meaningful with --tls");
  }
  if (tls_cert_file.empty() != tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (!tls_cert_file.empty() && !tls) {
    return absl::InvalidArgumentError("--tls-cert: only meaningful with --tls");
  }
  return absl::OkStatus();
}

grpc::ChannelArguments ClientChannelArguments() {
  grpc::ChannelArguments arguments;
  // Listings carry whole job specs; leave room beyond gRPC's 4 MiB default.
  arguments.SetMaxReceiveMessageSize(64 << 20);
  arguments.SetMaxSendMessageSize(64 << 20);
  // A watch that outlives a server restart should find the server within seconds, not after
  // gRPC's default reconnect backoff of up to two minutes.
  arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 250);
  arguments.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 250);
  arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  arguments.SetServiceConfigJSON(kClientServiceConfig);
  // Retries are on by default in gRPC >= 1.40; say so for the record.
  arguments.SetInt(GRPC_ARG_ENABLE_RETRIES, 1);
  return arguments;
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::Create(const GlobalOptions& options) {
  grpc::ChannelArguments arguments = ClientChannelArguments();
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.tls) {
    grpc::SslCredentialsOptions ssl;
    if (!options.ca_file.empty()) {
      absl::StatusOr<std::string> roots = ReadLocalFile(options.ca_file);
      if (!roots.ok()) {
        return absl::Status(roots.status().code(),
                            absl::StrCat("--ca: ", roots.status().message()));
      }
      ssl.pem_root_certs = *std::move(roots);
    }
    if (!options.tls_cert_file.empty()) {
      absl::StatusOr<std::string> cert = ReadLocalFile(options.tls_cert_file);
      if (!cert.ok()) {
        return absl::Status(cert.status().code(),
                            absl::StrCat("--tls-cert: ", cert.status().message()));
      }
      absl::StatusOr<std::string> key = ReadLocalFile(options.tls_key_file);
      if (!key.ok()) {
        return absl::Status(key.status().code(),
                            absl::StrCat("--tls-key: ", key.status().message()));
      }
      ssl.pem_cert_chain = *std::move(cert);
      ssl.pem_private_key = *std::move(key);
    }
    if (!options.tls_server_name.empty()) {
      arguments.SetSslTargetNameOverride(options.tls_server_name);
    }
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(options.server, credentials, arguments);
  return std::unique_ptr<Connection>(new Connection(options, std::move(channel)));
}

Connection::Connection(GlobalOptions options, std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      training_(verdict::v1::TrainingService::NewStub(channel_)),
      datasets_(verdict::v1::DatasetService::NewStub(channel_)),
      models_(verdict::v1::ModelService::NewStub(channel_)),
      scoring_(verdict::v1::ScoringService::NewStub(channel_)) {}

std::unique_ptr<grpc::ClientContext> Connection::NewContext(bool deadline) const {
  auto context = std::make_unique<grpc::ClientContext>();
  // Per-call metadata rather than call credentials: gRPC refuses call credentials on an
  // insecure channel, and a token over plain loopback is a legitimate setup.
  if (!options_.token.empty()) {
    context->AddMetadata("authorization", absl::StrCat("Bearer ", options_.token));
  }
  if (deadline && options_.timeout_seconds > 0) {
    context->set_deadline(
        std::chrono::system_clock::now() +
        std::chrono::microseconds(static_cast<int64_t>(options_.timeout_seconds * 1e6)));
  }
  return context;
}

}  // namespace verdict::client
