// verdict export: downloads a model version's directory (ModelService.DownloadModel).
#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <ostream>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "client/commands/commands.h"
#include "client/model_download.h"
#include "client/output.h"
#include "client/scoring.h"

namespace verdict::client {
namespace {

namespace fs = std::filesystem;

// Removes a temporary directory on every path out that did not publish it.
class TempDirectory {
 public:
  explicit TempDirectory(std::string path) : path_(std::move(path)) {}
  ~TempDirectory() {
    std::error_code ignored;
    if (!path_.empty()) fs::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }
  void Release() { path_.clear(); }

 private:
  std::string path_;
};

// Streams the version into `temp`, verifying as it goes. Returns the version downloaded; on
// an error, *from_server says whether the server refused (rather than what arrived failing
// its checks here).
absl::StatusOr<verdict::v1::Model> Download(Connection& connection,
                                            const verdict::v1::ModelRef& ref,
                                            const std::string& temp, int64_t* files, int64_t* bytes,
                                            bool* from_server) {
  *from_server = false;
  verdict::v1::DownloadModelRequest request;
  *request.mutable_model() = ref;
  // No deadline: a 7B model takes longer than --timeout to copy.
  std::unique_ptr<grpc::ClientContext> context = connection.NewContext(/*deadline=*/false);
  std::unique_ptr<grpc::ClientReader<verdict::v1::ModelChunk>> reader =
      connection.models().DownloadModel(context.get(), request);
  ModelDirectoryWriter writer(temp);
  verdict::v1::Model model;
  verdict::v1::ModelChunk chunk;
  absl::Status local;
  while (local.ok() && reader->Read(&chunk)) {
    if (chunk.has_model()) model = chunk.model();
    local = writer.Write(chunk);
  }
  if (!local.ok()) {
    context->TryCancel();
    reader->Finish().IgnoreError();
    return local;
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) {
    *from_server = true;
    return FromGrpc(status);
  }
  if (absl::Status whole = writer.Finish(); !whole.ok()) return whole;
  *files = writer.files();
  *bytes = writer.bytes();
  return model;
}

}  // namespace

int RunExport(const std::vector<std::string>& args, CommandEnv& env) {
  FlagParser flags("verdict export NAME[:VERSION|:ALIAS] DIR [flags]",
                   "Downloads a model version's Hugging Face directory (config.json,\n"
                   "model.safetensors, tokenizer files, reward statistics) into DIR, checking\n"
                   "the sha256 of every chunk and every file. DIR appears only when the whole\n"
                   "version has arrived intact; a DIR that exists and is not empty is refused\n"
                   "unless --force replaces it. NAME alone means its latest version.");
  bool force = false;
  flags.AddBool("force", &force, "Replace DIR if it exists and is not empty.");
  std::vector<std::string> positional;
  if (auto exit = ParseCommandArgs(flags, args, env, 2, 2, &positional)) return *exit;
  absl::StatusOr<verdict::v1::ModelRef> ref = ParseModelRef(positional[0]);
  if (!ref.ok()) {
    *env.err << "verdict: " << ref.status().message() << "\nUsage: " << flags.usage() << "\n";
    return kExitUsage;
  }
  const fs::path dir = fs::absolute(fs::path(positional[1])).lexically_normal();
  const fs::path target = dir.has_filename() ? dir : dir.parent_path();
  std::error_code error;
  const fs::file_status existing = fs::symlink_status(target, error);
  const bool exists = fs::exists(existing);
  if (exists && !fs::is_directory(existing)) {
    return ReportLocalError(absl::FailedPreconditionError(
                                absl::StrCat(target.string(), " exists and is not a directory")),
                            *env.err);
  }
  if (exists && !fs::is_empty(target, error) && !force) {
    return ReportLocalError(
        absl::FailedPreconditionError(
            absl::StrCat(target.string(), " is not empty; pass --force to replace what it holds")),
        *env.err);
  }
  // The temporary directory sits next to DIR, so that publishing it is a rename on one file
  // system.
  fs::create_directories(target.parent_path(), error);
  std::string pattern =
      (target.parent_path() / absl::StrCat(".", target.filename().string(), ".export-XXXXXX"))
          .string();
  if (mkdtemp(pattern.data()) == nullptr) {
    return ReportLocalError(
        absl::InternalError(absl::StrCat("cannot create a directory next to ", target.string(),
                                         ": ", std::strerror(errno))),
        *env.err);
  }
  TempDirectory temp(pattern);

  int exit_code = kExitOk;
  std::unique_ptr<Connection> connection = Connect(env, &exit_code);
  if (connection == nullptr) return exit_code;
  int64_t files = 0, bytes = 0;
  bool from_server = false;
  absl::StatusOr<verdict::v1::Model> model =
      Download(*connection, *ref, temp.path(), &files, &bytes, &from_server);
  if (!model.ok()) {
    if (from_server) return ReportRpcError(model.status(), env.options.server, *env.err);
    return ReportLocalError(model.status(), *env.err);
  }
  fs::permissions(temp.path(),
                  fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                      fs::perms::others_read | fs::perms::others_exec,
                  error);
  // Publish: an empty DIR is replaced by the rename itself; a non-empty one (--force) moves
  // aside first and is removed once the new directory is in place.
  std::optional<TempDirectory> old;
  if (exists && !fs::is_empty(target, error)) {
    std::string aside = pattern + ".old";
    fs::rename(target, aside, error);
    if (error) {
      return ReportLocalError(absl::InternalError(absl::StrCat("cannot move ", target.string(),
                                                               " aside: ", error.message())),
                              *env.err);
    }
    old.emplace(aside);
  }
  fs::rename(temp.path(), target, error);
  if (error) {
    if (old.has_value()) {
      std::error_code ignored;
      fs::rename(old->path(), target, ignored);
      if (!ignored) old->Release();
    }
    return ReportLocalError(
        absl::InternalError(
            absl::StrCat("cannot rename the download to ", target.string(), ": ", error.message())),
        *env.err);
  }
  temp.Release();
  if (env.options.format() == OutputFormat::kJson) {
    *env.out << ToJson(*model) << "\n";
  } else {
    *env.out << "exported " << model->name() << " version " << model->version() << " to "
             << target.string() << " (" << files << " files, " << bytes << " bytes)\n";
  }
  return kExitOk;
}

}  // namespace verdict::client
