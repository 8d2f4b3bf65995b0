#include "server/server.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <ATen/Parallel.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/support/server_interceptor.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/score/dynamic_batcher.h"
#include "core/score/thread_budget.h"
#include "core/util/compute_priority.h"
#include "core/util/build_info.h"
#include "core/util/file_util.h"
#include "core/util/status_macros.h"
#include "server/audit.h"
#include "server/auth.h"
#include "server/dataset_service.h"
#include "server/event_hub.h"
#include "server/http_scoring.h"
#include "server/job_manager.h"
#include "server/logging.h"
#include "server/model_follower.h"
#include "server/model_registry.h"
#include "server/model_service.h"
#include "server/model_watch.h"
#include "server/replica_store.h"
#include "server/scoring_service.h"
#include "server/server_metrics.h"
#include "server/sqlite_job_store.h"
#include "server/startup_sweep.h"
#include "server/training_service.h"
#include "server/validation.h"


namespace verdict::server {
namespace {

namespace fs = std::filesystem;

constexpr char kScoringService[] = "verdict.v1.ScoringService";
const char* const kServices[] = {"verdict.v1.TrainingService", "verdict.v1.DatasetService",
                                 "verdict.v1.ModelService", kScoringService};

// Counts and times every RPC, whatever the service, in one place.
class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(grpc::experimental::ServerRpcInfo* info, ServerMetrics* metrics)
      : method_(info->method()), metrics_(metrics), start_(absl::Now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      metrics_->RecordRpc(method_, static_cast<absl::StatusCode>(status.error_code()),
                          absl::Now() - start_);
    }
    methods->Proceed();
  }

 private:
  const std::string method_;
  ServerMetrics* const metrics_;
  const absl::Time start_;
};

class MetricsInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(ServerMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
    return new MetricsInterceptor(info, metrics_);
  }

 private:
  ServerMetrics* const metrics_;
};

// What a scoring replica answers for the services it does not serve (training, datasets):
// UNIMPLEMENTED naming the role and the control plane, rather than gRPC's bare "unknown
// method".
class RoleRefusal final : public grpc::CallbackGenericService {
 public:
  explicit RoleRefusal(std::string control_plane) : control_plane_(std::move(control_plane)) {}
  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* context) override {
    class Refuse final : public grpc::ServerGenericBidiReactor {
     public:
      explicit Refuse(const std::string& message) {
        Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, message));
      }
      void OnDone() override { delete this; }
    };
    return new Refuse(absl::StrCat("verdictd --role=scoring does not serve ", context->method(),
                                   ": call the control plane (", control_plane_, ")"));
  }

 private:
  const std::string control_plane_;
};

// --serve_models: "name:alias" each.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseServeModels(
    const std::vector<std::string>& specs) {
  std::vector<std::pair<std::string, std::string>> served;
  for (const std::string& spec : specs) {
    const size_t colon = spec.find(':');
    if (colon == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--serve_models: \"", spec, "\" is not NAME:ALIAS (e.g. reward:production)"));
    }
    std::string name = spec.substr(0, colon), alias = spec.substr(colon + 1);
    RETURN_IF_ERROR(ValidateModelName("--serve_models name", name));
    RETURN_IF_ERROR(ValidateAlias("--serve_models alias", alias, /*allow_latest=*/true));
    served.emplace_back(std::move(name), std::move(alias));
  }
  return served;
}

// The flag's name in front of a parse error from logging.h.
template <typename T>
absl::StatusOr<T> ForFlag(absl::string_view flag, absl::StatusOr<T> parsed) {
  if (parsed.ok()) return parsed;
  return absl::InvalidArgumentError(absl::StrCat(flag, ": ", parsed.status().message()));
}

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" ||
         absl::StartsWith(host, "127.");
}

absl::Status ValidateConfig(const ServerConfig& c) {
  if (c.port < 0 || c.port > 65535) return absl::InvalidArgumentError("--port: must be in [0, 65535]");
  if (c.metrics_port < -1 || c.metrics_port > 65535) {
    return absl::InvalidArgumentError("--metrics_port: must be -1 (off) or in [0, 65535]");
  }
  if (c.http_port < -1 || c.http_port > 65535) {
    return absl::InvalidArgumentError("--http_port: must be -1 (off) or in [0, 65535]");
  }
  if (c.http_port >= 0 && !c.tls_cert_file.empty()) {
    const std::string& http_host = c.http_host.empty() ? c.host : c.http_host;
    if (!IsLoopback(http_host)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--http_port: HTTP scoring is plain HTTP (Debian 12's civetweb cannot serve TLS with "
          "OpenSSL 3) and gRPC uses TLS here: set --http_host=127.0.0.1 and put a TLS proxy in "
          "front, rather than send tokens and texts in the clear on ", http_host));
    }
  }
  if (c.http_threads < 1 || c.http_threads > 1024) {
    return absl::InvalidArgumentError("--http_threads: must be in [1, 1024]");
  }
  if (!c.http_model.empty()) {
    RETURN_IF_ERROR(ValidateModelRef("--http_model", ParseModelSpec(c.http_model)));
  }
  if (c.role != "all" && c.role != "control" && c.role != "scoring") {
    return absl::InvalidArgumentError(
        absl::StrCat("--role: must be all, control or scoring, got \"", c.role, "\""));
  }
  if (c.role == "scoring") {
    if (c.control_plane.empty()) {
      return absl::InvalidArgumentError(
          "--control_plane: required with --role=scoring (e.g. dns:///verdict-control:50051)");
    }
    if (!c.preload_models.empty()) {
      return absl::InvalidArgumentError(
          "--preload_models: not with --role=scoring; name the aliases to serve with "
          "--serve_models=NAME:ALIAS");
    }
    RETURN_IF_ERROR(ParseServeModels(c.serve_models).status());
  } else if (!c.control_plane.empty() || !c.control_plane_token_file.empty() ||
             !c.serve_models.empty()) {
    return absl::InvalidArgumentError(
        "--control_plane, --control_plane_token_file and --serve_models: only with "
        "--role=scoring");
  }
  if (c.max_concurrent_jobs < 1) return absl::InvalidArgumentError("--max_concurrent_jobs: must be >= 1");
  if (c.max_queued_jobs < 1) return absl::InvalidArgumentError("--max_queued_jobs: must be >= 1");
  if (c.log_format != "text" && c.log_format != "json") {
    return absl::InvalidArgumentError("--log_format: must be text or json");
  }
  // Scoring: what a batcher would refuse at a model's first load, refused here at start.
  auto positive = [](const char* flag, int64_t value) -> absl::Status {
    if (value > 0) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": must be > 0, got ", value));
  };
  RETURN_IF_ERROR(positive("max_batch_tokens", c.max_batch_tokens));
  RETURN_IF_ERROR(positive("max_batch_items", c.max_batch_items));
  RETURN_IF_ERROR(positive("max_queued_items", c.max_queued_items));
  RETURN_IF_ERROR(positive("max_items_per_request", c.max_items_per_request));
  RETURN_IF_ERROR(positive("max_item_bytes", c.max_item_bytes));
  if (c.max_queue_delay < absl::ZeroDuration() || c.max_queue_delay == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_queue_delay_ms: must be >= 0 and finite, got ",
                     absl::FormatDuration(c.max_queue_delay)));
  }
  DynamicBatcher::Options batcher;
  batcher.max_batch_tokens = c.max_batch_tokens;
  batcher.max_batch_items = c.max_batch_items;
  batcher.max_queue_delay = c.max_queue_delay;
  batcher.max_queue_items = c.max_queued_items;
  if (absl::Status valid = DynamicBatcher::ValidateOptions(batcher); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("scoring batcher flags: ", valid.message()));
  }
  const std::pair<const char*, int> thread_counts[] = {{"scoring_threads", c.scoring_threads},
                                                        {"training_threads", c.training_threads},
                                                        {"blas_threads", c.blas_threads}};
  for (const auto& [flag, threads] : thread_counts) {
    if (threads < 0) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, ": must be >= 0, got ", threads));
    }
  }
  if (c.scoring_quantization != "none" && c.scoring_quantization != "int8") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--scoring_quantization: must be none or int8, got ", c.scoring_quantization));
  }
  if (c.training_nice < 0 || c.training_nice > 19) {
    return absl::InvalidArgumentError(
        absl::StrCat("--training_nice: must be in [0, 19], got ", c.training_nice));
  }
  if (c.training_yield < absl::ZeroDuration() || c.training_yield == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--training_yield_ms: must be >= 0 and finite, got ",
                     absl::FormatDuration(c.training_yield)));
  }
  if (c.tls_cert_file.empty() != c.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  if (!c.tls_client_ca_file.empty() && c.tls_cert_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_client_ca needs --tls_cert and --tls_key: client certificates are checked in TLS");
  }
  return ForFlag("--log_level", ParseLogLevel(c.log_level)).status();
}

// Exclusive ownership of a state directory: flock(LOCK_EX) on <state_dir>/LOCK, held until
// destruction (or the process's end). flock locks belong to the open file description, so a
// second open -- by another process or by this one -- conflicts.
class StateDirLock {
 public:
  static absl::StatusOr<std::unique_ptr<StateDirLock>> Acquire(const std::string& state_dir) {
    const std::string path = (fs::path(state_dir) / "LOCK").string();
    const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int error = errno;
      std::string holder;
      char buffer[32] = {};
      const ssize_t n = pread(fd, buffer, sizeof(buffer) - 1, 0);
      if (n > 0) {
        holder = std::string(absl::StripAsciiWhitespace(absl::string_view(buffer, n)));
      }
      close(fd);
      if (error == EWOULDBLOCK) {
        return absl::FailedPreconditionError(absl::StrCat(
            "--state_dir ", state_dir, " is in use by another verdictd",
            holder.empty() ? std::string() : absl::StrCat(" (pid ", holder, ")"),
            "; each server needs its own state directory (lock file ", path, ")"));
      }
      return absl::FailedPreconditionError(
          absl::StrCat("cannot lock ", path, ": ", std::strerror(error)));
    }
    // Who holds it, for the error above; the lock, not the content, is what counts.
    const std::string pid = absl::StrCat(getpid(), "\n");
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) < 0) {
      std::cerr << "verdictd: cannot write the pid to " << path << ": " << std::strerror(errno)
                << "\n";
    }
    return std::unique_ptr<StateDirLock>(new StateDirLock(fd));
  }
  ~StateDirLock() { close(fd_); }  // releases the lock
  StateDirLock(const StateDirLock&) = delete;
  StateDirLock& operator=(const StateDirLock&) = delete;

 private:
  explicit StateDirLock(int fd) : fd_(fd) {}
  const int fd_;
};

// The config with its defaults resolved: empty data and model roots go under state_dir.
ServerConfig ResolveDefaults(const ServerConfig& config) {
  ServerConfig resolved = config;
  if (resolved.data_dir.empty()) resolved.data_dir = (fs::path(config.state_dir) / "data").string();
  if (resolved.model_dir.empty()) {
    resolved.model_dir = (fs::path(config.state_dir) / "models-in").string();
  }
  return resolved;
}

}  // namespace

struct VerdictServer::Parts {
  // Declared first, so released last: the directory stays ours until everything is stopped.
  std::unique_ptr<StateDirLock> state_dir_lock;
  ServerConfig config;
  std::unique_ptr<Logger> logger;
  std::shared_ptr<prometheus::Registry> registry;
  std::unique_ptr<ServerMetrics> metrics;
  std::unique_ptr<prometheus::Exposer> exposer;
  std::unique_ptr<SqliteJobStore> store;  // null in the scoring role
  std::unique_ptr<ReplicaModelStore> replica_store;  // the scoring role's instead
  JobStore* model_store = nullptr;  // whichever of the two holds the model registry
  EventHub events;
  std::unique_ptr<Authenticator> auth;
  std::unique_ptr<ModelRegistry> models;
  // Scoring before training on shared cores; outlives the jobs and the scoring that use it.
  ComputePriority priority;
  std::unique_ptr<JobManager> jobs;
  std::unique_ptr<TrainingService> training_service;
  std::unique_ptr<DatasetService> dataset_service;
  std::unique_ptr<ModelWatchHub> model_watch;
  std::unique_ptr<ModelService> model_service;
  std::unique_ptr<ModelFollower> follower;  // scoring role
  std::unique_ptr<RoleRefusal> refusal;     // scoring role
  std::unique_ptr<BatchScoring> scoring;
  std::unique_ptr<ScoringService> scoring_service;
  std::unique_ptr<HttpScoring> http;
  std::unique_ptr<grpc::Server> grpc_server;
  int port = 0;
  int metrics_port = -1;
  int http_port = -1;
  bool shut_down = false;
  absl::Mutex health_mutex;
  bool draining ABSL_GUARDED_BY(health_mutex) = false;

  void SetScoringHealth(int loaded) {
    absl::MutexLock lock(&health_mutex);
    if (grpc_server == nullptr || draining) return;
    grpc_server->GetHealthCheckService()->SetServingStatus(kScoringService, loaded > 0);
  }
};

VerdictServer::VerdictServer(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}

VerdictServer::~VerdictServer() { Shutdown(); }

int VerdictServer::port() const { return parts_->port; }
int VerdictServer::metrics_port() const { return parts_->metrics_port; }
int VerdictServer::http_port() const { return parts_->http_port; }

absl::StatusOr<std::unique_ptr<VerdictServer>> VerdictServer::Start(
    const ServerConfig& requested) {
  RETURN_IF_ERROR(ValidateConfig(requested));
  const ServerConfig config = ResolveDefaults(requested);
  auto parts = std::make_unique<Parts>();
  Parts& p = *parts;
  p.config = config;
  LoggerOptions log_options;
  log_options.format = config.log_format == "json" ? LogFormat::kJson : LogFormat::kText;
  ASSIGN_OR_RETURN(log_options.min_level, ForFlag("--log_level", ParseLogLevel(config.log_level)));
  p.logger = std::make_unique<Logger>(log_options);
  // Thread budgets (core/score/thread_budget.h): the process-wide intra-op default is the
  // scoring one (a model's scoring thread starts with it); job workers set their own.
  if (config.scoring_threads > 0) at::set_num_threads(config.scoring_threads);
  if (config.blas_threads > 0 && !SetBlasThreads(config.blas_threads)) {
    p.logger->Warning("threads.blas_ignored").With("reason", "the BLAS is not OpenBLAS");
  }

  for (const std::string& dir : {config.state_dir, config.data_dir, config.model_dir}) {
    std::error_code error;
    fs::create_directories(dir, error);
    if (error) return absl::FailedPreconditionError(absl::StrCat("cannot create ", dir, ": ", error.message()));
    if (dir == config.state_dir) {
      // Before anything reads the state: a second server on it would resume the first one's
      // jobs and register their models twice.
      ASSIGN_OR_RETURN(p.state_dir_lock, StateDirLock::Acquire(config.state_dir));
    }
  }

  p.registry = std::make_shared<prometheus::Registry>();
  p.metrics = std::make_unique<ServerMetrics>(
      *p.registry, ServerMetrics::BuildInfo{BuildVersion(), BuildCommit(), config.default_device});
  if (config.metrics_port >= 0) {
    std::vector<BasicAuthUser> users;
    if (!config.metrics_basic_auth_file.empty()) {
      ASSIGN_OR_RETURN(users, ReadBasicAuthFile(config.metrics_basic_auth_file));
    }
    const std::string metrics_host =
        config.metrics_address.empty() ? config.host : config.metrics_address;
    ASSIGN_OR_RETURN(p.exposer, StartMetricsExposer(metrics_host, config.metrics_port, p.registry));
    if (!users.empty()) {
      p.exposer->RegisterAuth(
          [users = std::move(users)](const std::string& user, const std::string& password) {
            return CheckBasicAuth(users, user, password);
          },
          "verdictd metrics");
    }
    p.metrics_port = p.exposer->GetListeningPorts().front();
    if (!config.token_file.empty() && config.metrics_basic_auth_file.empty() &&
        !IsLoopback(metrics_host)) {
      p.logger->Warning("metrics.unprotected")
          .With("metrics_address", metrics_host)
          .With("hint", "gRPC needs a token but /metrics is open: set --metrics_address=127.0.0.1 "
                        "or --metrics_basic_auth_file");
    }
  }

  const bool scoring_role = config.role == "scoring";
  if (scoring_role) {
    // No store of its own: the registry is mirrored from the control plane into memory.
    p.replica_store = std::make_unique<ReplicaModelStore>(config.control_plane);
    p.model_store = p.replica_store.get();
  } else {
    ASSIGN_OR_RETURN(p.store,
                     SqliteJobStore::Open((fs::path(config.state_dir) / "verdict.db").string()));
    p.model_store = p.store.get();
    // The lock is ours and nothing serves yet: what a crash left half-made can go.
    RETURN_IF_ERROR(SweepCrashLeftovers(config.state_dir, *p.store, p.logger.get()).status());
  }
  TokenSet tokens;
  if (!config.token_file.empty()) {
    ASSIGN_OR_RETURN(tokens, ReadTokenFile(config.token_file));
  } else if (!config.api_token.empty()) {
    tokens.push_back(TokenEntry{Role::kAdmin, "default", HashToken(config.api_token)});
  }
  p.auth = std::make_unique<Authenticator>(std::move(tokens), p.logger.get());

  Parts* raw = &p;
  ModelRegistry::Dependencies model_deps;
  model_deps.store = p.model_store;
  model_deps.metrics = p.metrics.get();
  model_deps.logger = p.logger.get();
  model_deps.on_loaded_count = [raw](int loaded) { raw->SetScoringHealth(loaded); };
  p.models = std::make_unique<ModelRegistry>(config, std::move(model_deps));

  if (!scoring_role) {
    JobManager::Dependencies job_deps;
    job_deps.store = p.store.get();
    job_deps.events = &p.events;
    job_deps.logger = p.logger.get();
    job_deps.metrics = p.metrics.get();
    job_deps.priority = &p.priority;
    job_deps.resolvers.dataset_file = [raw](const std::string& id) -> absl::StatusOr<std::string> {
      RETURN_IF_ERROR(raw->store->GetDataset(id).status());
      return DatasetFilePath(raw->config, id);
    };
    job_deps.resolvers.registered_model =
        [raw](const v1::ModelRef& ref) -> absl::StatusOr<std::pair<std::string, int64_t>> {
      ASSIGN_OR_RETURN(v1::Model model, raw->store->GetModel(ref));
      return std::make_pair(raw->models->StoragePath(model), model.version());
    };
    ASSIGN_OR_RETURN(p.jobs, JobManager::Create(config, std::move(job_deps)));

    p.training_service = std::make_unique<TrainingService>(p.jobs.get(), p.store.get(), &p.events, p.auth.get());
    p.dataset_service = std::make_unique<DatasetService>(config, p.store.get(), p.auth.get());
  }
  p.model_watch = std::make_unique<ModelWatchHub>(p.model_store);
  p.model_service = std::make_unique<ModelService>(config, p.model_store, p.models.get(),
                                                   p.auth.get(), p.model_watch.get());
  p.scoring = std::make_unique<BatchScoring>(config, p.models.get(), &p.priority);
  p.scoring_service = std::make_unique<ScoringService>(p.scoring.get(), p.auth.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!config.tls_cert_file.empty()) {
    ASSIGN_OR_RETURN(std::string cert, ReadFileToString(config.tls_cert_file));
    ASSIGN_OR_RETURN(std::string key, ReadFileToString(config.tls_key_file));
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({key, cert});
    if (!config.tls_client_ca_file.empty()) {
      ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadFileToString(config.tls_client_ca_file));
      ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    }
    credentials = grpc::SslServerCredentials(ssl);
  }
  builder.AddListeningPort(absl::StrCat(config.host, ":", config.port), credentials, &p.port);
  // gRPC sets SO_REUSEPORT by default, which lets a second server bind the same port and take
  // half the connections; a taken port must fail the start instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Scoring replicas keep a WatchModels stream open to the control plane and ping it every
  // 20 s (model_follower.cc) to notice a vanished one; allow that rather than answer
  // GOAWAY(too_many_pings).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(config.max_message_bytes));
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<CallRegistryFactory>(p.auth.get(), p.logger.get()));
  interceptors.push_back(std::make_unique<MetricsInterceptorFactory>(p.metrics.get()));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  if (scoring_role) {
    p.refusal = std::make_unique<RoleRefusal>(config.control_plane);
    builder.RegisterCallbackGenericService(p.refusal.get());
  } else {
    builder.RegisterService(p.training_service.get());
    builder.RegisterService(p.dataset_service.get());
  }
  builder.RegisterService(p.model_service.get());
  builder.RegisterService(p.scoring_service.get());
  p.grpc_server = builder.BuildAndStart();
  if (p.grpc_server == nullptr || p.port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", config.host, ":", config.port));
  }
  if (config.http_port >= 0) {
    ASSIGN_OR_RETURN(p.http,
                     HttpScoring::Start(config, p.scoring.get(), p.auth.get(), p.metrics.get()));
    p.http_port = p.http->port();
  }
  if (p.jobs != nullptr) p.jobs->StartWorkers();
  auto* health = p.grpc_server->GetHealthCheckService();
  health->SetServingStatus(true);
  for (const char* service : kServices) {
    // A scoring replica serves no training or datasets: those report nothing (NOT_FOUND).
    if (scoring_role && service != kScoringService &&
        std::string(service) != "verdict.v1.ModelService") {
      continue;
    }
    health->SetServingStatus(service, true);
  }
  // SERVING once a version is loaded (SetScoringHealth), in every role.
  health->SetServingStatus(kScoringService, p.models->LoadedCount() > 0);

  for (const std::string& spec : config.preload_models) {
    const v1::ModelRef ref = ParseModelSpec(spec);
    auto loaded = p.models->Acquire(ref);
    if (!loaded.ok()) {
      return absl::Status(loaded.status().code(),
                          absl::StrCat("--preload_models ", spec, ": ", loaded.status().message()));
    }
  }
  if (scoring_role) {
    ModelFollower::Options follow;
    follow.control_plane = config.control_plane;
    if (!config.control_plane_token_file.empty()) {
      ASSIGN_OR_RETURN(std::string token, ReadFileToString(config.control_plane_token_file));
      follow.token = std::string(absl::StripAsciiWhitespace(token));
      if (follow.token.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--control_plane_token_file: ", config.control_plane_token_file, " is empty"));
      }
    }
    ASSIGN_OR_RETURN(follow.serve, ParseServeModels(config.serve_models));
    follow.state_dir = config.state_dir;
    follow.max_message_bytes = config.max_message_bytes;
    p.follower = std::make_unique<ModelFollower>(std::move(follow), p.replica_store.get(),
                                                 p.models.get(), p.logger.get());
    p.follower->Start();
  }
  p.logger->Info("server.started").With("address", absl::StrCat(config.host, ":", p.port))
      .With("role", config.role)
      .With("metrics_port", p.metrics_port).With("http_port", p.http_port)
      .With("state_dir", config.state_dir);
  return std::unique_ptr<VerdictServer>(new VerdictServer(std::move(parts)));
}

absl::Status VerdictServer::ReloadTokens() {
  Parts& p = *parts_;
  if (p.config.token_file.empty()) {
    return absl::FailedPreconditionError("no --token_file to reload");
  }
  absl::Status status = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(TokenSet tokens, ReadTokenFile(p.config.token_file));
    const size_t count = tokens.size();
    RETURN_IF_ERROR(p.auth->Reload(std::move(tokens)));
    p.logger->Info("auth.reloaded").With("token_file", p.config.token_file).With("tokens", count);
    return absl::OkStatus();
  }();
  if (!status.ok()) {
    p.logger->Error("auth.reload_failed")
        .With("token_file", p.config.token_file)
        .With("error", status)
        .With("kept", "the previous tokens");
  }
  return status;
}

void VerdictServer::Shutdown() {
  Parts& p = *parts_;
  if (p.shut_down) return;
  p.shut_down = true;
  p.logger->Info("server.draining");
  {
    absl::MutexLock lock(&p.health_mutex);
    p.draining = true;
    // Load balancers stop sending new calls first.
    p.grpc_server->GetHealthCheckService()->Shutdown();
  }
  if (p.http != nullptr) p.http->Drain();
  if (p.follower != nullptr) p.follower->Stop();  // no more downloads or swaps
  p.model_watch->Close();   // WatchModels streams end with UNAVAILABLE
  if (p.jobs != nullptr) p.jobs->Drain();  // the running job checkpoints and goes back to QUEUED
  p.events.Close();         // metrics streams send that, then end with UNAVAILABLE
  p.models->DrainAll();     // queued scoring requests complete
  p.http.reset();           // HTTP requests in flight have their scores: stop listening
  p.grpc_server->Shutdown(std::chrono::system_clock::now() +
                          absl::ToChronoSeconds(p.config.drain_grace));
  p.jobs.reset();
  p.logger->Info("server.stopped");
}

absl::Status RunServer(const ServerConfig& config) {
  // Block the signals in every thread (they inherit the mask) and take them here.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ASSIGN_OR_RETURN(std::unique_ptr<VerdictServer> server, VerdictServer::Start(config));
  std::cout << "verdictd listening on " << config.host << ":" << server->port();
  if (server->metrics_port() >= 0) std::cout << ", metrics on :" << server->metrics_port() << "/metrics";
  if (server->http_port() >= 0) std::cout << ", HTTP scoring on :" << server->http_port();
  std::cout << std::endl;
  int received = 0;
  // SIGHUP re-reads --token_file; a bad file keeps the tokens in force (logged).
  while (sigwait(&signals, &received) == 0 && received == SIGHUP) {
    server->ReloadTokens().IgnoreError();
  }
  server->Shutdown();
  return absl::OkStatus();
}

}  // namespace verdict::server
