#include "server/audit.h"

#include <google/protobuf/message.h>
#include <google/protobuf/text_format.h>

#include <array>

#include "absl/status/status.h"

namespace verdict::server {
namespace {

constexpr std::array<absl::string_view, 7> kAuditedMethods = {
    "/verdict.v1.ModelService/ImportModel",      "/verdict.v1.ModelService/SetModelAlias",
    "/verdict.v1.ModelService/DeleteModelAlias", "/verdict.v1.ModelService/LoadModel",
    "/verdict.v1.ModelService/UnloadModel",      "/verdict.v1.DatasetService/DeleteDataset",
    "/verdict.v1.TrainingService/CancelJob"};

// Registers the call for its life; writes the audit line of an audited call at its end.
class CallRegistryInterceptor final : public grpc::experimental::Interceptor {
 public:
  CallRegistryInterceptor(grpc::experimental::ServerRpcInfo* info, Authenticator* auth,
                          Logger* logger)
      : context_(info->server_context()),
        method_(info->method()),
        audited_(IsAuditedMethod(method_)),
        auth_(auth),
        logger_(logger) {
    auth_->RegisterCall(context_, method_);
  }
  ~CallRegistryInterceptor() override { auth_->UnregisterCall(context_); }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (audited_ &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE)) {
      // Audited methods are unary verdict RPCs: the request is a protobuf message.
      if (const auto* request =
              static_cast<const google::protobuf::Message*>(methods->GetRecvMessage())) {
        google::protobuf::TextFormat::Printer printer;
        printer.SetSingleLineMode(true);
        printer.SetTruncateStringFieldLongerThan(64);
        printer.PrintToString(*request, &target_);
        while (!target_.empty() && target_.back() == ' ') target_.pop_back();
        if (target_.size() > kMaxTargetBytes) target_.resize(kMaxTargetBytes);
      }
    }
    if (audited_ && logger_ != nullptr &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      // A call the Authenticator refused was logged there.
      if (std::optional<std::string> caller = auth_->AcceptedCaller(context_); caller.has_value()) {
        const grpc::Status status = methods->GetSendStatus();
        logger_->Info("audit")
            .With("who", CallerIdentity(*caller, *context_))
            .With("what", method_)
            .With("target", target_)
            .With("outcome",
                  absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())))
            .With("peer", context_->peer());
      }
    }
    methods->Proceed();
  }

 private:
  grpc::ServerContextBase* const context_;
  const std::string method_;
  const bool audited_;
  Authenticator* const auth_;
  Logger* const logger_;
  std::string target_;
};

}  // namespace

bool IsAuditedMethod(absl::string_view method) {
  for (absl::string_view audited : kAuditedMethods) {
    if (audited == method) return true;
  }
  return false;
}

grpc::experimental::Interceptor* CallRegistryFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new CallRegistryInterceptor(info, auth_, logger_);
}

}  // namespace verdict::server
