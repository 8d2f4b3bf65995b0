// End to end: who may call verdictd. The real binary, started with a token file of three roles,
// mutual TLS, and a protected /metrics, driven over loopback through gRPC, HTTP(S) and
// signals; the certificates are made by Debian's openssl tool in the test. Checks what the
// callers get (status codes and messages) and what the operator's log says (JSON "audit" lines,
// reload events), and that no token ever reaches either.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <openssl/sha.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/util/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/child_process.h"
#include "tests/testing/loopback_http.h"
#include "tests/testing/test_paths.h"
#include "verdict/v1/datasets.grpc.pb.h"
#include "verdict/v1/models.grpc.pb.h"
#include "verdict/v1/scoring.grpc.pb.h"
#include "verdict/v1/training.grpc.pb.h"

namespace verdict::testing {
namespace {

namespace fs = std::filesystem;

using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::Duration kStartupTimeout = absl::Seconds(60);
constexpr absl::Duration kLogTimeout = absl::Seconds(20);

// Plain tokens the callers send; the file stores one of them hashed.
constexpr char kScoreToken[] = "score-4f1c9a7e2b";
constexpr char kTrainToken[] = "train-8d2e6b0c1a";
constexpr char kAdminToken[] = "admin-3a9f5c7d0e";
constexpr char kNewScoreToken[] = "score-new-77aa11bb";

// What `printf %s "$TOKEN" | sha256sum` prints.
std::string Sha256Hex(const std::string& text) {
  unsigned char hash[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), hash);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(hash), 32));
}

void WriteFile(const fs::path& path, const std::string& content) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::unique_ptr<grpc::ClientContext> Context(const std::string& token = "") {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  if (!token.empty()) context->AddMetadata("authorization", absl::StrCat("Bearer ", token));
  return context;
}

// Runs a program to its end; fails the test unless it exits 0.
void Run(const std::vector<std::string>& argv, const fs::path& log) {
  ChildProcess::Options options;
  options.log_path = log.string();
  auto process = ChildProcess::Start(argv, options);
  ASSERT_TRUE(process.ok()) << process.status();
  absl::StatusOr<int> code = (*process)->Wait(absl::Seconds(60));
  ASSERT_TRUE(code.ok()) << code.status();
  ASSERT_EQ(*code, 0) << (*process)->Log();
}

struct Verdictd {
  std::unique_ptr<ChildProcess> process;
  int port = 0;
  int metrics_port = -1;
};

// Starts verdictd on a free loopback port, JSON logs, with `flags` added.
absl::StatusOr<Verdictd> StartVerdictd(const fs::path& root, std::vector<std::string> flags) {
  std::vector<std::string> argv = {
      VERDICTD_PATH, "--host=127.0.0.1",
      "--port=0",    "--log_format=json",
      "--threads=1", absl::StrCat("--state_dir=", (root / "state").string())};
  argv.insert(argv.end(), flags.begin(), flags.end());
  ChildProcess::Options options;
  options.log_path = (root / "verdictd.log").string();
  Verdictd server;
  ASSIGN_OR_RETURN(server.process, ChildProcess::Start(argv, options));
  ASSIGN_OR_RETURN(std::string line,
                   server.process->WaitForLogLine("verdictd listening on", kStartupTimeout));
  std::smatch match;
  if (!std::regex_search(line, match, std::regex(R"(listening on \S+:(\d+))")) ||
      !absl::SimpleAtoi(match[1].str(), &server.port)) {
    return absl::DataLossError(absl::StrCat("no port in \"", line, "\""));
  }
  if (std::regex_search(line, match, std::regex(R"(metrics on :(\d+))"))) {
    absl::SimpleAtoi(match[1].str(), &server.metrics_port);
  }
  return server;
}

// grpc.health.v1.Health/Check for the whole server, with no token: its status.
grpc::Status CheckHealth(const std::shared_ptr<grpc::Channel>& channel) {
  grpc::ByteBuffer request;  // an empty HealthCheckRequest
  grpc::Slice empty("");
  request = grpc::ByteBuffer(&empty, 1);
  grpc::ByteBuffer response;
  grpc::GenericStub stub(channel);
  auto context = Context();
  std::promise<grpc::Status> done;
  stub.UnaryCall(context.get(), "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                 &response, [&done](grpc::Status status) { done.set_value(std::move(status)); });
  return done.get_future().get();
}

// The lines of verdictd's log holding every one of `parts`.
std::vector<std::string> LogLinesWith(const ChildProcess& process,
                                      const std::vector<std::string>& parts) {
  std::vector<std::string> found;
  std::istringstream log(process.Log());
  for (std::string line; std::getline(log, line);) {
    bool all = true;
    for (const std::string& part : parts) all = all && absl::StrContains(line, part);
    if (all) found.push_back(line);
  }
  return found;
}

class IdentityE2eTest : public ::testing::Test {
 protected:
  ScratchDir scratch_;
  fs::path root() const { return scratch_.path(); }
};

TEST_F(IdentityE2eTest, RolesAuditLinesAndSighupReload) {
  const fs::path token_file = root() / "tokens";
  const std::string tokens = absl::StrCat("# role name token\n", "score dashboards ", kScoreToken,
                                          "\n", "train trainer-1 sha256:", Sha256Hex(kTrainToken),
                                          "\n", "admin ops ", kAdminToken, "\n");
  WriteFile(token_file, tokens);
  // /metrics open on every interface while gRPC needs a token: started, with a warning.
  auto server = StartVerdictd(root(), {"--metrics_port=0", "--metrics_address=0.0.0.0",
                                       absl::StrCat("--token_file=", token_file.string())});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_THAT(server->process->Log(), HasSubstr(R"("event":"metrics.unprotected")"));
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server->port),
                                     grpc::InsecureChannelCredentials());
  auto models = v1::ModelService::NewStub(channel);
  auto training = v1::TrainingService::NewStub(channel);
  auto datasets = v1::DatasetService::NewStub(channel);

  // Health stays open.
  EXPECT_TRUE(CheckHealth(channel).ok());

  v1::ListModelsRequest list_models;
  v1::ListModelsResponse models_out;
  EXPECT_EQ(models->ListModels(Context().get(), list_models, &models_out).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(
      models->ListModels(Context("wrong-token-1").get(), list_models, &models_out).error_code(),
      grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(models->ListModels(Context(kScoreToken).get(), list_models, &models_out).ok());

  v1::ListJobsRequest list_jobs;
  v1::ListJobsResponse jobs_out;
  grpc::Status denied = training->ListJobs(Context(kScoreToken).get(), list_jobs, &jobs_out);
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(denied.error_message(), HasSubstr("needs the train role"));
  EXPECT_THAT(denied.error_message(), Not(HasSubstr(kScoreToken)));
  EXPECT_TRUE(training->ListJobs(Context(kTrainToken).get(), list_jobs, &jobs_out).ok());

  v1::SetModelAliasRequest alias;
  alias.set_name("no-such-model");
  alias.set_version(1);
  alias.set_alias("prod");
  v1::Model model_out;
  grpc::Status train_alias = models->SetModelAlias(Context(kTrainToken).get(), alias, &model_out);
  EXPECT_EQ(train_alias.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(train_alias.error_message(), HasSubstr("needs the admin role"));
  // Admin passes authorization; the model is not there.
  EXPECT_EQ(models->SetModelAlias(Context(kAdminToken).get(), alias, &model_out).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::CancelJobRequest cancel;
  cancel.set_job_id("no-such-job");
  v1::Job job_out;
  EXPECT_EQ(training->CancelJob(Context(kTrainToken).get(), cancel, &job_out).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(training->CancelJob(Context(kAdminToken).get(), cancel, &job_out).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::DeleteDatasetRequest delete_dataset;
  delete_dataset.set_dataset_id("no-such-dataset");
  google::protobuf::Empty empty_out;
  const grpc::Status deleted =
      datasets->DeleteDataset(Context(kTrainToken).get(), delete_dataset, &empty_out);
  EXPECT_NE(deleted.error_code(), grpc::StatusCode::PERMISSION_DENIED) << deleted.error_message();

  // The audit trail: refusals and admin actions, with who, what, target and outcome.
  ASSERT_TRUE(server->process->WaitForLogLine("no-such-dataset", kLogTimeout).ok());
  const ChildProcess& log = *server->process;
  EXPECT_EQ(LogLinesWith(log, {R"("event":"audit")", R"("who":"anonymous")",
                               R"("outcome":"UNAUTHENTICATED")", R"("reason":"no_token")"})
                .size(),
            1u)
      << log.Log();
  EXPECT_EQ(LogLinesWith(log, {R"("event":"audit")", R"("reason":"invalid_token")"}).size(), 1u);
  EXPECT_EQ(LogLinesWith(log, {R"("event":"audit")", R"("who":"token:dashboards")",
                               R"("what":"/verdict.v1.TrainingService/ListJobs")",
                               R"("outcome":"PERMISSION_DENIED")"})
                .size(),
            1u)
      << log.Log();
  EXPECT_EQ(LogLinesWith(log, {R"("event":"audit")", R"("who":"token:ops")",
                               R"("what":"/verdict.v1.ModelService/SetModelAlias")",
                               "no-such-model", R"("outcome":"NOT_FOUND")"})
                .size(),
            1u)
      << log.Log();
  EXPECT_EQ(LogLinesWith(log, {R"("event":"audit")", R"("who":"token:ops")",
                               R"("what":"/verdict.v1.TrainingService/CancelJob")", "no-such-job"})
                .size(),
            1u)
      << log.Log();
  EXPECT_EQ(
      LogLinesWith(log, {R"("event":"audit")", R"("who":"token:trainer-1")",
                         R"("what":"/verdict.v1.DatasetService/DeleteDataset")", "no-such-dataset"})
          .size(),
      1u)
      << log.Log();
  // Reads are not audited.
  EXPECT_TRUE(LogLinesWith(log, {R"("event":"audit")", R"("outcome":"OK")", "ListModels"}).empty());

  // SIGHUP: the score token is replaced; new calls see the new set.
  WriteFile(token_file, absl::StrCat("score dashboards sha256:", Sha256Hex(kNewScoreToken), "\n",
                                     "admin ops ", kAdminToken, "\n"));
  ASSERT_EQ(::kill(server->process->pid(), SIGHUP), 0);
  ASSERT_TRUE(server->process->WaitForLogLine("auth.reloaded", kLogTimeout).ok())
      << server->process->Log();
  EXPECT_EQ(models->ListModels(Context(kScoreToken).get(), list_models, &models_out).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(training->ListJobs(Context(kTrainToken).get(), list_jobs, &jobs_out).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(models->ListModels(Context(kNewScoreToken).get(), list_models, &models_out).ok());

  // A bad file on reload keeps the tokens in force, and says so.
  WriteFile(token_file, absl::StrCat("score dashboards ", kScoreToken, "\nroot ops x-123456\n"));
  ASSERT_EQ(::kill(server->process->pid(), SIGHUP), 0);
  absl::StatusOr<std::string> failed =
      server->process->WaitForLogLine("auth.reload_failed", kLogTimeout);
  ASSERT_TRUE(failed.ok()) << failed.status();
  EXPECT_THAT(*failed, HasSubstr("line 2: unknown role"));
  EXPECT_TRUE(models->ListModels(Context(kNewScoreToken).get(), list_models, &models_out).ok());
  EXPECT_EQ(models->ListModels(Context(kScoreToken).get(), list_models, &models_out).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  // No token, plain or hashed, ever reaches the log.
  const std::string whole_log = server->process->Log();
  for (const std::string secret : {kScoreToken, kTrainToken, kAdminToken, kNewScoreToken}) {
    EXPECT_THAT(whole_log, Not(HasSubstr(secret)));
    EXPECT_THAT(whole_log, Not(HasSubstr(Sha256Hex(secret))));
  }
  EXPECT_EQ(server->process->Stop(SIGTERM, absl::Seconds(30)).value_or(-1), 0);
}

// A token file that would be guessed at once, or that is malformed, stops the start.
TEST_F(IdentityE2eTest, ABadTokenFileRefusesToStartNamingTheLine) {
  const fs::path token_file = root() / "tokens";
  WriteFile(token_file, absl::StrCat("admin ops ", kAdminToken, "\nscore ops ", kScoreToken, "\n"));
  ChildProcess::Options options;
  options.log_path = (root() / "refused.log").string();
  auto process = ChildProcess::Start({VERDICTD_PATH, "--port=0", "--metrics_port=-1",
                                      absl::StrCat("--state_dir=", (root() / "state").string()),
                                      absl::StrCat("--token_file=", token_file.string())},
                                     options);
  ASSERT_TRUE(process.ok()) << process.status();
  absl::StatusOr<int> code = (*process)->Wait(absl::Seconds(30));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 2);
  EXPECT_THAT((*process)->Log(), HasSubstr("line 2: the name \"ops\" is used by an earlier line"));
  EXPECT_THAT((*process)->Log(), Not(HasSubstr(kScoreToken)));
}

// Certificates for mutual TLS: a CA, the server's certificate for 127.0.0.1, a client
// certificate "client-1" it signs, and a client certificate of an unrelated CA.
struct Pki {
  fs::path ca_cert, server_cert, server_key, client_cert, client_key, rogue_cert, rogue_key;
};

Pki MakePki(const fs::path& dir) {
  Pki pki;
  const std::string openssl = "/usr/bin/openssl";
  const fs::path log = dir / "openssl.log";
  auto self_signed = [&](const std::string& name, const std::string& cn) {
    Run({openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=" + cn, "-keyout", (dir / (name + ".key")).string(), "-out",
         (dir / (name + ".pem")).string()},
        log);
  };
  auto signed_by_ca = [&](const std::string& name, const std::string& cn,
                          const std::string& extensions) {
    Run({openssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + cn, "-keyout",
         (dir / (name + ".key")).string(), "-out", (dir / (name + ".csr")).string()},
        log);
    WriteFile(dir / (name + ".ext"), extensions);
    Run({openssl, "x509", "-req", "-in", (dir / (name + ".csr")).string(), "-CA",
         (dir / "ca.pem").string(), "-CAkey", (dir / "ca.key").string(), "-CAcreateserial", "-days",
         "1", "-extfile", (dir / (name + ".ext")).string(), "-out",
         (dir / (name + ".pem")).string()},
        log);
  };
  self_signed("ca", "verdict test CA");
  signed_by_ca("server", "verdict.test", "subjectAltName=IP:127.0.0.1,DNS:verdict.test\n");
  signed_by_ca("client", "client-1", "extendedKeyUsage=clientAuth\n");
  self_signed("rogue", "client-1");
  pki.ca_cert = dir / "ca.pem";
  pki.server_cert = dir / "server.pem";
  pki.server_key = dir / "server.key";
  pki.client_cert = dir / "client.pem";
  pki.client_key = dir / "client.key";
  pki.rogue_cert = dir / "rogue.pem";
  pki.rogue_key = dir / "rogue.key";
  return pki;
}

std::shared_ptr<grpc::Channel> TlsChannel(int port, const Pki& pki, const fs::path& cert,
                                          const fs::path& key) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadFile(pki.ca_cert);
  if (!cert.empty()) {
    ssl.pem_cert_chain = ReadFile(cert);
    ssl.pem_private_key = ReadFile(key);
  }
  grpc::ChannelArguments arguments;
  arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port), grpc::SslCredentials(ssl),
                                   arguments);
}

TEST_F(IdentityE2eTest, MutualTlsRequiresAClientCertificateAndLogsItsIdentity) {
  const Pki pki = MakePki(root());
  if (HasFatalFailure()) return;
  const fs::path token_file = root() / "tokens";
  WriteFile(token_file, absl::StrCat("admin ops ", kAdminToken, "\n"));
  auto server = StartVerdictd(
      root(), {"--metrics_port=-1", absl::StrCat("--token_file=", token_file.string()),
               absl::StrCat("--tls_cert=", pki.server_cert.string()),
               absl::StrCat("--tls_key=", pki.server_key.string()),
               absl::StrCat("--tls_client_ca=", pki.ca_cert.string())});
  ASSERT_TRUE(server.ok()) << server.status();

  v1::SetModelAliasRequest alias;
  alias.set_name("no-such-model");
  alias.set_version(1);
  alias.set_alias("prod");
  v1::Model model_out;
  auto with_cert =
      v1::ModelService::NewStub(TlsChannel(server->port, pki, pki.client_cert, pki.client_key));
  EXPECT_EQ(with_cert->SetModelAlias(Context(kAdminToken).get(), alias, &model_out).error_code(),
            grpc::StatusCode::NOT_FOUND);
  // The certificate does not replace the token.
  EXPECT_EQ(with_cert->SetModelAlias(Context().get(), alias, &model_out).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // No certificate, or one the CA did not sign: no connection at all.
  auto without_cert = v1::ModelService::NewStub(TlsChannel(server->port, pki, "", ""));
  EXPECT_EQ(without_cert->SetModelAlias(Context(kAdminToken).get(), alias, &model_out).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  auto rogue =
      v1::ModelService::NewStub(TlsChannel(server->port, pki, pki.rogue_cert, pki.rogue_key));
  EXPECT_EQ(rogue->SetModelAlias(Context(kAdminToken).get(), alias, &model_out).error_code(),
            grpc::StatusCode::UNAVAILABLE);

  ASSERT_TRUE(server->process->WaitForLogLine("SetModelAlias", kLogTimeout).ok());
  const ChildProcess& log = *server->process;
  EXPECT_EQ(LogLinesWith(log, {R"("event":"audit")", R"("who":"token:ops cert:client-1")",
                               R"("outcome":"NOT_FOUND")"})
                .size(),
            1u)
      << log.Log();
  EXPECT_EQ(LogLinesWith(log, {R"("event":"audit")", R"("who":"cert:client-1")",
                               R"("outcome":"UNAUTHENTICATED")"})
                .size(),
            1u)
      << log.Log();
}

TEST_F(IdentityE2eTest, MutualTlsWithoutServerTlsIsRefused) {
  ChildProcess::Options options;
  options.log_path = (root() / "refused.log").string();
  auto process =
      ChildProcess::Start({VERDICTD_PATH, "--port=0", "--metrics_port=-1",
                           absl::StrCat("--state_dir=", (root() / "state").string()),
                           absl::StrCat("--tls_client_ca=", (root() / "ca.pem").string())},
                          options);
  ASSERT_TRUE(process.ok()) << process.status();
  absl::StatusOr<int> code = (*process)->Wait(absl::Seconds(30));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_NE(*code, 0);
  EXPECT_THAT((*process)->Log(), HasSubstr("--tls_client_ca needs --tls_cert"));
}

TEST_F(IdentityE2eTest, MetricsCanBeBoundElsewhereAndRequireBasicAuth) {
  const fs::path users = root() / "metrics-users";
  WriteFile(users, absl::StrCat("prometheus sha256:", Sha256Hex("scrape-pass-9"), "\n"));
  // gRPC on 127.0.0.2, /metrics on 127.0.0.1 (where HttpGet connects): the two addresses are
  // independent.
  auto server =
      StartVerdictd(root(), {"--host=127.0.0.2", "--metrics_port=0", "--metrics_address=127.0.0.1",
                             absl::StrCat("--metrics_basic_auth_file=", users.string())});
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT(server->metrics_port, 0);
  auto get = [&](const std::string& credentials) -> HttpResponse {
    const std::string header =
        credentials.empty()
            ? ""
            : absl::StrCat("Authorization: Basic ", absl::Base64Escape(credentials), "\r\n");
    absl::StatusOr<HttpResponse> response =
        HttpGet(server->metrics_port, "/metrics", absl::Seconds(10), header);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : HttpResponse{};
  };
  EXPECT_EQ(get("").status_code, 401);
  EXPECT_EQ(get("prometheus:wrong").status_code, 401);
  EXPECT_EQ(get("other:scrape-pass-9").status_code, 401);
  const HttpResponse ok = get("prometheus:scrape-pass-9");
  EXPECT_EQ(ok.status_code, 200);
  EXPECT_THAT(ok.body, HasSubstr("verdict_build_info"));
}

}  // namespace
}  // namespace verdict::testing
