#include "server/sqlite_job_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/util/status_macros.h"
#include "google/protobuf/timestamp.pb.h"

namespace verdict::server {
namespace {

constexpr char kLatest[] = "latest";
constexpr int kBusyTimeoutMs = 5000;

// One schema step. Steps are never edited once released: a change to the schema is a new
// step appended here, which Open() applies to older files.
struct Migration {
  const char* description;
  const char* sql;
};

const Migration kMigrations[] = {
    {"initial schema", R"sql(
-- request_id is NULL for a job submitted without one, so UNIQUE ignores those jobs.
-- create_ns is create_time in nanoseconds since the Unix epoch: listings page by
-- (create_ns, id). last_sequence is the highest MetricsEvent.sequence ever appended.
CREATE TABLE jobs (
  id                TEXT    NOT NULL PRIMARY KEY,
  request_id        TEXT    UNIQUE,
  state             INTEGER NOT NULL,
  output_model_name TEXT    NOT NULL,
  create_ns         INTEGER NOT NULL,
  last_sequence     INTEGER NOT NULL DEFAULT 0,
  job               BLOB    NOT NULL
);
CREATE INDEX jobs_by_create_time ON jobs (create_ns, id);

-- The uploaded datasets each job's spec names (train_data, eval.dataset).
CREATE TABLE job_datasets (
  job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  dataset_id TEXT NOT NULL,
  PRIMARY KEY (job_id, dataset_id)
) WITHOUT ROWID;
CREATE INDEX job_datasets_by_dataset ON job_datasets (dataset_id);

-- kind is the MetricsEvent.event oneof field number (5 train, 6 eval, 7 state_change, 8 log).
CREATE TABLE events (
  job_id   TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  sequence INTEGER NOT NULL,
  step     INTEGER NOT NULL,
  kind     INTEGER NOT NULL,
  event    BLOB    NOT NULL,
  PRIMARY KEY (job_id, sequence)
) WITHOUT ROWID;

CREATE TABLE datasets (
  id        TEXT    NOT NULL PRIMARY KEY,
  create_ns INTEGER NOT NULL,
  dataset   BLOB    NOT NULL
);
CREATE INDEX datasets_by_create_time ON datasets (create_ns, id);

CREATE TABLE model_versions (
  name    TEXT    NOT NULL,
  version INTEGER NOT NULL,
  model   BLOB    NOT NULL,
  PRIMARY KEY (name, version)
) WITHOUT ROWID;

CREATE TABLE model_aliases (
  name    TEXT    NOT NULL,
  alias   TEXT    NOT NULL,
  version INTEGER NOT NULL,
  PRIMARY KEY (name, alias),
  FOREIGN KEY (name, version) REFERENCES model_versions (name, version)
) WITHOUT ROWID;
CREATE INDEX model_aliases_by_version ON model_aliases (name, version);
)sql"},
    {"model evaluations", R"sql(
-- One row per SUCCEEDED evaluation job. data is "dataset:<id>" or "path:<path>"; create_ns
-- orders a version's evaluations, newest last.
CREATE TABLE model_evaluations (
  job_id    TEXT    NOT NULL PRIMARY KEY,
  name      TEXT    NOT NULL,
  version   INTEGER NOT NULL,
  data      TEXT    NOT NULL,
  create_ns INTEGER NOT NULL,
  result    BLOB    NOT NULL,
  FOREIGN KEY (name, version) REFERENCES model_versions (name, version)
);
CREATE INDEX model_evaluations_by_version ON model_evaluations (name, version, data, create_ns);
)sql"},
};

std::string EvaluationDataKey(const v1::EvaluationResult& result) {
  return result.data_case() == v1::EvaluationResult::kDatasetId
             ? absl::StrCat("dataset:", result.dataset_id())
             : absl::StrCat("path:", result.data_path());
}

// Orders by time in one integer column. Nanoseconds since 1970 fit an int64 until 2262;
// later (or earlier than 1678) times saturate, which only affects their relative order.
int64_t TimestampNanos(const google::protobuf::Timestamp& time) {
  constexpr int64_t kNanosPerSecond = 1000000000;
  constexpr int64_t kMaxSeconds = std::numeric_limits<int64_t>::max() / kNanosPerSecond - 1;
  const int64_t seconds = std::clamp<int64_t>(time.seconds(), -kMaxSeconds, kMaxSeconds);
  return seconds * kNanosPerSecond + time.nanos();
}

absl::Status ErrorFromSqlite(sqlite3* db, int code, absl::string_view operation) {
  const char* message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(code);
  std::string text = absl::StrCat(operation, ": ", message, " (sqlite code ", code, ")");
  switch (code & 0xff) {
    case SQLITE_CONSTRAINT:
      if (code == SQLITE_CONSTRAINT_PRIMARYKEY || code == SQLITE_CONSTRAINT_UNIQUE) {
        return absl::AlreadyExistsError(text);
      }
      return absl::FailedPreconditionError(text);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(text);
    case SQLITE_FULL:
      return absl::ResourceExhaustedError(text);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(text);
    default:
      return absl::InternalError(text);
  }
}

absl::StatusOr<int32_t> EffectivePageSize(int32_t page_size) {
  if (page_size < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size: must be >= 0, got ", page_size));
  }
  if (page_size == 0) return PageRequest::kDefaultPageSize;
  return std::min(page_size, PageRequest::kMaxPageSize);
}

// Where the next page starts: after the item with this (key, number), in the listing's order.
struct PageCursor {
  bool present = false;
  std::string key;
  int64_t number = 0;
};

// A token is base64 of "<listing>|<filter>|<key>|<number>" with the strings base64-escaped
// too, so that no name or id can break the split. The filter is in the token so that a token
// used with another filter is refused instead of silently skipping items.
std::string EncodePageToken(absl::string_view listing, absl::string_view filter,
                            absl::string_view key, int64_t number) {
  return absl::WebSafeBase64Escape(absl::StrCat(listing, "|", absl::WebSafeBase64Escape(filter),
                                                "|", absl::WebSafeBase64Escape(key), "|",
                                                number));
}

absl::StatusOr<PageCursor> DecodePageToken(absl::string_view token, absl::string_view listing,
                                           absl::string_view filter) {
  PageCursor cursor;
  if (token.empty()) return cursor;
  const absl::Status malformed = absl::InvalidArgumentError(
      absl::StrCat("page_token: malformed (not a token of this listing): \"", token, "\""));
  std::string raw;
  if (!absl::WebSafeBase64Unescape(token, &raw)) return malformed;
  std::vector<std::string> parts = absl::StrSplit(raw, '|');
  std::string token_filter;
  if (parts.size() != 4 || parts[0] != listing ||
      !absl::WebSafeBase64Unescape(parts[1], &token_filter) ||
      !absl::WebSafeBase64Unescape(parts[2], &cursor.key) ||
      !absl::SimpleAtoi(parts[3], &cursor.number)) {
    return malformed;
  }
  if (token_filter != filter) {
    return absl::InvalidArgumentError(
        "page_token: was issued for a different filter; start again with an empty token");
  }
  // Only the exact text this code issues is accepted: base64 tolerates some trailing bytes
  // and SimpleAtoi whitespace, which would let an altered token through.
  if (EncodePageToken(listing, filter, cursor.key, cursor.number) != token) return malformed;
  cursor.present = true;
  return cursor;
}

// The states as a bit set (bit s for state s), 0 for "every state", which SQL tests with
// ((1 << state) & mask).
absl::StatusOr<int64_t> StateMask(const std::vector<v1::JobState>& states) {
  int64_t mask = 0;
  for (v1::JobState state : states) {
    if (!v1::JobState_IsValid(state) || state < 0 || state > 62) {
      return absl::InvalidArgumentError(
          absl::StrCat("states: ", static_cast<int>(state), " is not a JobState"));
    }
    mask |= int64_t{1} << state;
  }
  return mask;
}

// The uploaded datasets a spec reads, with the field that names each.
std::vector<std::pair<std::string, std::string>> DatasetIdsNamedBy(const v1::Job& job) {
  std::vector<std::pair<std::string, std::string>> ids;
  if (job.has_evaluation_spec()) {
    if (job.evaluation_spec().data().source_case() == v1::DatasetRef::kDatasetId) {
      ids.emplace_back("spec.data.dataset_id", job.evaluation_spec().data().dataset_id());
    }
    return ids;
  }
  const v1::TrainingJobSpec& spec = job.spec();
  if (spec.train_data().source_case() == v1::DatasetRef::kDatasetId) {
    ids.emplace_back("spec.train_data.dataset_id", spec.train_data().dataset_id());
  }
  if (spec.eval().source_case() == v1::EvalSpec::kDataset &&
      spec.eval().dataset().source_case() == v1::DatasetRef::kDatasetId) {
    ids.emplace_back("spec.eval.dataset.dataset_id", spec.eval().dataset().dataset_id());
  }
  return ids;
}

template <typename Message>
absl::StatusOr<Message> ParseStored(absl::string_view bytes, absl::string_view what) {
  Message message;
  if (!message.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError(absl::StrCat(what, ": the stored message does not parse"));
  }
  return message;
}

std::string Quoted(absl::string_view text) { return absl::StrCat("\"", text, "\""); }

}  // namespace

const int SqliteJobStore::kSchemaVersion = static_cast<int>(std::size(kMigrations));

// ---------------------------------------------------------------------------------------------
// A cached prepared statement in use. Binding errors are kept and reported by the first
// Step(); the destructor resets the statement so the cache can hand it out again.

class SqliteJobStore::Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt, absl::string_view operation)
      : db_(db), stmt_(stmt), operation_(operation) {}
  Statement(Statement&& other) noexcept
      : db_(other.db_),
        stmt_(std::exchange(other.stmt_, nullptr)),
        operation_(std::move(other.operation_)),
        bind_error_(other.bind_error_) {}
  Statement& operator=(Statement&&) = delete;
  ~Statement() {
    if (stmt_ != nullptr) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }

  // Parameters are numbered from 1, as ?1, ?2, ... in the SQL.
  Statement& Bind(int index, int64_t value) {
    return Check(sqlite3_bind_int64(stmt_, index, value));
  }
  Statement& Bind(int index, absl::string_view text) {
    // A null pointer would bind SQL NULL rather than the empty string.
    return Check(sqlite3_bind_text(stmt_, index, text.data() != nullptr ? text.data() : "",
                                   static_cast<int>(text.size()), SQLITE_TRANSIENT));
  }
  Statement& BindBlob(int index, absl::string_view bytes) {
    return Check(sqlite3_bind_blob(stmt_, index, bytes.data() != nullptr ? bytes.data() : "",
                                   static_cast<int>(bytes.size()), SQLITE_TRANSIENT));
  }
  Statement& BindNull(int index) { return Check(sqlite3_bind_null(stmt_, index)); }

  // Advances to the next row: true if there is one, false when the statement is done.
  absl::StatusOr<bool> Step() {
    if (bind_error_ != SQLITE_OK) return ErrorFromSqlite(db_, bind_error_, operation_);
    const int code = sqlite3_step(stmt_);
    if (code == SQLITE_ROW) return true;
    if (code == SQLITE_DONE) return false;
    return ErrorFromSqlite(db_, code, operation_);
  }

  // Runs the statement to completion, ignoring any rows.
  absl::Status Run() {
    while (true) {
      ASSIGN_OR_RETURN(bool row, Step());
      if (!row) return absl::OkStatus();
    }
  }

  bool IsNull(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }
  int64_t Int(int column) const { return sqlite3_column_int64(stmt_, column); }
  std::string Text(int column) const {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
    return text != nullptr ? std::string(text, sqlite3_column_bytes(stmt_, column)) : "";
  }
  // Valid until the next Step() or the statement's end.
  absl::string_view Blob(int column) const {
    const auto* data = static_cast<const char*>(sqlite3_column_blob(stmt_, column));
    return data != nullptr ? absl::string_view(data, sqlite3_column_bytes(stmt_, column))
                           : absl::string_view();
  }

 private:
  Statement& Check(int code) {
    if (code != SQLITE_OK && bind_error_ == SQLITE_OK) bind_error_ = code;
    return *this;
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  std::string operation_;
  int bind_error_ = SQLITE_OK;
};

// ---------------------------------------------------------------------------------------------
// BEGIN IMMEDIATE ... COMMIT, rolled back on destruction unless committed. IMMEDIATE takes the
// write lock at once, so a read-check-write sequence cannot interleave with another writer.
// Created only by methods holding mu_, and destroyed before they release it.

class SqliteJobStore::Transaction {
 public:
  static absl::StatusOr<Transaction> Begin(SqliteJobStore* store, absl::string_view operation)
      ABSL_NO_THREAD_SAFETY_ANALYSIS {
    ASSIGN_OR_RETURN(Statement begin, store->Prepare("BEGIN IMMEDIATE", operation));
    RETURN_IF_ERROR(begin.Run());
    return Transaction(store, operation);
  }
  Transaction(Transaction&& other) noexcept
      : store_(std::exchange(other.store_, nullptr)), operation_(std::move(other.operation_)) {}
  Transaction& operator=(Transaction&&) = delete;

  ~Transaction() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    // A failed statement may already have ended the transaction (e.g. on SQLITE_FULL).
    if (store_ == nullptr || sqlite3_get_autocommit(store_->db_)) return;
    absl::StatusOr<Statement> rollback = store_->Prepare("ROLLBACK", operation_);
    if (rollback.ok()) rollback->Run().IgnoreError();  // Nothing better to do on failure.
  }

  absl::Status Commit() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    ASSIGN_OR_RETURN(Statement commit, store_->Prepare("COMMIT", operation_));
    RETURN_IF_ERROR(commit.Run());
    store_ = nullptr;
    return absl::OkStatus();
  }

 private:
  Transaction(SqliteJobStore* store, absl::string_view operation)
      : store_(store), operation_(operation) {}

  SqliteJobStore* store_;
  std::string operation_;
};

// ---------------------------------------------------------------------------------------------
// Opening, schema, closing.

absl::StatusOr<std::unique_ptr<SqliteJobStore>> SqliteJobStore::Open(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code error;
    std::filesystem::create_directories(parent, error);
    if (error) {
      return absl::Status(absl::ErrnoToStatusCode(error.value()),
                          absl::StrCat("job store: cannot create directory ", parent.string(),
                                       ": ", error.message()));
    }
  }
  sqlite3* db = nullptr;
  const int code = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                   /*zVfs=*/nullptr);
  if (code != SQLITE_OK) {
    absl::Status status = ErrorFromSqlite(db, code, absl::StrCat("job store: open ", path));
    sqlite3_close(db);
    return status;
  }
  sqlite3_extended_result_codes(db, 1);
  std::unique_ptr<SqliteJobStore> store(new SqliteJobStore(path, db));
  {
    absl::MutexLock lock(&store->mu_);
    RETURN_IF_ERROR(store->Initialize());
  }
  return store;
}

SqliteJobStore::SqliteJobStore(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}

SqliteJobStore::~SqliteJobStore() {
  absl::Status status = Close();
  if (!status.ok()) {
    std::fprintf(stderr, "job store %s: %s\n", path_.c_str(), status.ToString().c_str());
  }
}

absl::Status SqliteJobStore::Initialize() {
  const std::string operation = absl::StrCat("job store: open ", path_);
  sqlite3_busy_timeout(db_, kBusyTimeoutMs);
  {
    // The first statement reads the file header: a file that is not a database fails here.
    ASSIGN_OR_RETURN(Statement journal, Prepare("PRAGMA journal_mode = WAL", operation));
    ASSIGN_OR_RETURN(bool row, journal.Step());
    const std::string mode = row ? journal.Text(0) : "";
    if (mode != "wal") {
      return absl::FailedPreconditionError(
          absl::StrCat(operation, ": cannot use write-ahead logging (journal_mode is \"", mode,
                       "\")"));
    }
  }
  RETURN_IF_ERROR(Execute("PRAGMA synchronous = FULL", operation));
  RETURN_IF_ERROR(Execute("PRAGMA foreign_keys = ON", operation));
  return Migrate();
}

absl::Status SqliteJobStore::Migrate() {
  while (true) {
    const std::string operation = absl::StrCat("job store ", path_, ": schema migration");
    // Reading the version inside the write transaction keeps two processes opening one new
    // file from both applying a step.
    ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(this, operation));
    int64_t version = 0;
    {
      ASSIGN_OR_RETURN(Statement read, Prepare("PRAGMA user_version", operation));
      ASSIGN_OR_RETURN(bool row, read.Step());
      if (row) version = read.Int(0);
    }
    if (version > kSchemaVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job store ", path_, ": schema version ", version, " is newer than the ",
          kSchemaVersion, " this verdictd knows; run a newer verdictd or use another file"));
    }
    if (version == kSchemaVersion) return absl::OkStatus();
    const Migration& step = kMigrations[version];
    const std::string step_operation =
        absl::StrCat(operation, " to version ", version + 1, " (", step.description, ")");
    RETURN_IF_ERROR(Execute(step.sql, step_operation));
    RETURN_IF_ERROR(
        Execute(absl::StrCat("PRAGMA user_version = ", version + 1), step_operation));
    RETURN_IF_ERROR(transaction.Commit());
  }
}

absl::Status SqliteJobStore::Execute(absl::string_view sql, absl::string_view operation) {
  const std::string text(sql);
  const int code = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, nullptr);
  if (code != SQLITE_OK) return ErrorFromSqlite(db_, code, operation);
  return absl::OkStatus();
}

absl::StatusOr<SqliteJobStore::Statement> SqliteJobStore::Prepare(const char* sql,
                                                                   absl::string_view operation) {
  RETURN_IF_ERROR(CheckOpen());
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    sqlite3_stmt* stmt = nullptr;
    const int code = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (code != SQLITE_OK) return ErrorFromSqlite(db_, code, operation);
    it = statements_.emplace(sql, stmt).first;
  }
  return Statement(db_, it->second, operation);
}

absl::Status SqliteJobStore::CheckOpen() const {
  if (db_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("job store ", path_, " is closed"));
  }
  return absl::OkStatus();
}

absl::Status SqliteJobStore::SqliteError(int code, absl::string_view operation) const {
  return ErrorFromSqlite(db_, code, operation);
}

absl::Status SqliteJobStore::Close() {
  absl::MutexLock lock(&mu_);
  if (db_ == nullptr) return absl::OkStatus();
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  statements_.clear();
  const int code = sqlite3_close(db_);
  if (code != SQLITE_OK) return SqliteError(code, absl::StrCat("job store: close ", path_));
  db_ = nullptr;
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Jobs.

absl::Status SqliteJobStore::CreateJob(const v1::Job& job) {
  if (job.id().empty()) return absl::InvalidArgumentError("job.id: must not be empty");
  const std::string operation = absl::StrCat("create job ", Quoted(job.id()));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(this, operation));
  {
    ASSIGN_OR_RETURN(Statement find, Prepare("SELECT 1 FROM jobs WHERE id = ?1", operation));
    ASSIGN_OR_RETURN(bool taken, find.Bind(1, job.id()).Step());
    if (taken) {
      return absl::AlreadyExistsError(absl::StrCat("job ", Quoted(job.id()), " already exists"));
    }
  }
  if (!job.request_id().empty()) {
    ASSIGN_OR_RETURN(Statement find,
                     Prepare("SELECT id FROM jobs WHERE request_id = ?1", operation));
    ASSIGN_OR_RETURN(bool used, find.Bind(1, job.request_id()).Step());
    if (used) {
      return absl::AlreadyExistsError(absl::StrCat("request_id ", Quoted(job.request_id()),
                                                   " was already used by job ",
                                                   Quoted(find.Text(0))));
    }
  }
  const auto dataset_ids = DatasetIdsNamedBy(job);
  for (const auto& [field, dataset_id] : dataset_ids) {
    ASSIGN_OR_RETURN(Statement find,
                     Prepare("SELECT 1 FROM datasets WHERE id = ?1", operation));
    ASSIGN_OR_RETURN(bool exists, find.Bind(1, dataset_id).Step());
    if (!exists) {
      return absl::NotFoundError(
          absl::StrCat(field, ": dataset ", Quoted(dataset_id), " not found"));
    }
  }
  {
    ASSIGN_OR_RETURN(Statement insert,
                     Prepare("INSERT INTO jobs (id, request_id, state, output_model_name, "
                             "create_ns, last_sequence, job) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
                             operation));
    insert.Bind(1, job.id());
    if (job.request_id().empty()) {
      insert.BindNull(2);
    } else {
      insert.Bind(2, job.request_id());
    }
    insert.Bind(3, int64_t{job.state()})
        .Bind(4, job.spec().output_model_name())
        .Bind(5, TimestampNanos(job.create_time()))
        .BindBlob(6, job.SerializeAsString());
    RETURN_IF_ERROR(insert.Run());
  }
  for (const auto& [field, dataset_id] : dataset_ids) {
    ASSIGN_OR_RETURN(Statement insert,
                     Prepare("INSERT OR IGNORE INTO job_datasets (job_id, dataset_id) "
                             "VALUES (?1, ?2)",
                             operation));
    RETURN_IF_ERROR(insert.Bind(1, job.id()).Bind(2, dataset_id).Run());
  }
  return transaction.Commit();
}

absl::StatusOr<v1::Job> SqliteJobStore::GetJob(absl::string_view job_id) {
  absl::MutexLock lock(&mu_);
  return GetJobLocked(job_id);
}

absl::StatusOr<v1::Job> SqliteJobStore::GetJobLocked(absl::string_view job_id) {
  const std::string operation = absl::StrCat("get job ", Quoted(job_id));
  ASSIGN_OR_RETURN(Statement select,
                   Prepare("SELECT job, last_sequence FROM jobs WHERE id = ?1", operation));
  ASSIGN_OR_RETURN(bool found, select.Bind(1, job_id).Step());
  if (!found) return absl::NotFoundError(absl::StrCat("job ", Quoted(job_id), " not found"));
  ASSIGN_OR_RETURN(v1::Job job, ParseStored<v1::Job>(select.Blob(0), operation));
  job.set_last_sequence(select.Int(1));
  return job;
}

absl::StatusOr<v1::Job> SqliteJobStore::FindJobByRequestId(absl::string_view request_id) {
  const std::string operation = absl::StrCat("find job by request_id ", Quoted(request_id));
  if (request_id.empty()) return absl::InvalidArgumentError(operation + ": empty request_id");
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Statement select,
                   Prepare("SELECT job, last_sequence FROM jobs WHERE request_id = ?1",
                           operation));
  ASSIGN_OR_RETURN(bool found, select.Bind(1, request_id).Step());
  if (!found) {
    return absl::NotFoundError(
        absl::StrCat("no job has request_id ", Quoted(request_id)));
  }
  ASSIGN_OR_RETURN(v1::Job job, ParseStored<v1::Job>(select.Blob(0), operation));
  job.set_last_sequence(select.Int(1));
  return job;
}

absl::Status SqliteJobStore::UpdateJob(const v1::Job& job) {
  const std::string operation = absl::StrCat("update job ", Quoted(job.id()));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(this, operation));
  {
    ASSIGN_OR_RETURN(Statement select,
                     Prepare("SELECT request_id, create_ns FROM jobs WHERE id = ?1", operation));
    ASSIGN_OR_RETURN(bool found, select.Bind(1, job.id()).Step());
    if (!found) return absl::NotFoundError(absl::StrCat("job ", Quoted(job.id()), " not found"));
    const std::string stored_request_id = select.Text(0);  // NULL reads as "".
    if (stored_request_id != job.request_id()) {
      return absl::InvalidArgumentError(
          absl::StrCat(operation, ": request_id cannot change (stored ",
                       Quoted(stored_request_id), ", got ", Quoted(job.request_id()), ")"));
    }
    if (select.Int(1) != TimestampNanos(job.create_time())) {
      return absl::InvalidArgumentError(absl::StrCat(operation, ": create_time cannot change"));
    }
  }
  RETURN_IF_ERROR(WriteJobLocked(job, operation));
  return transaction.Commit();
}

absl::Status SqliteJobStore::WriteJobLocked(const v1::Job& job, absl::string_view operation) {
  v1::Job stored = job;
  stored.clear_last_sequence();  // the store's own column is the truth
  ASSIGN_OR_RETURN(Statement update,
                   Prepare("UPDATE jobs SET state = ?2, output_model_name = ?3, job = ?4 "
                           "WHERE id = ?1",
                           operation));
  return update.Bind(1, stored.id())
      .Bind(2, int64_t{stored.state()})
      .Bind(3, stored.spec().output_model_name())
      .BindBlob(4, stored.SerializeAsString())
      .Run();
}

absl::StatusOr<v1::Job> SqliteJobStore::TransitionedJobLocked(
    absl::string_view job_id, const std::vector<v1::JobState>& from, v1::JobState to,
    const JobEdit& edit) {
  ASSIGN_OR_RETURN(v1::Job job, GetJobLocked(job_id));
  if (std::find(from.begin(), from.end(), job.state()) == from.end()) {
    std::vector<std::string> names;
    for (v1::JobState state : from) names.push_back(v1::JobState_Name(state));
    return absl::FailedPreconditionError(
        absl::StrCat("job ", Quoted(job_id), " is ", v1::JobState_Name(job.state()),
                     ", not ", absl::StrJoin(names, " or "), ": it cannot become ",
                     v1::JobState_Name(to)));
  }
  const v1::Job before = job;
  if (edit) edit(job);
  if (job.id() != before.id() || job.request_id() != before.request_id() ||
      TimestampNanos(job.create_time()) != TimestampNanos(before.create_time()) ||
      job.state() != before.state()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "job ", Quoted(job_id), ": an edit may not change id, request_id, create_time or state"));
  }
  job.set_state(to);
  return job;
}

absl::StatusOr<v1::Job> SqliteJobStore::TransitionJob(absl::string_view job_id,
                                                      const std::vector<v1::JobState>& from,
                                                      v1::JobState to, const JobEdit& edit,
                                                      const TransitionEvent& event) {
  const std::string operation =
      absl::StrCat("move job ", Quoted(job_id), " to ", v1::JobState_Name(to));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(this, operation));
  ASSIGN_OR_RETURN(v1::Job job, TransitionedJobLocked(job_id, from, to, edit));
  RETURN_IF_ERROR(WriteTransitionedJobLocked(job, event, operation));
  RETURN_IF_ERROR(transaction.Commit());
  return job;
}

absl::Status SqliteJobStore::UpdateJobProgress(absl::string_view job_id,
                                               const v1::JobProgress& progress) {
  const std::string operation = absl::StrCat("update the progress of job ", Quoted(job_id));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(this, operation));
  ASSIGN_OR_RETURN(v1::Job job, GetJobLocked(job_id));
  if (job.state() == v1::JOB_STATE_SUCCEEDED || job.state() == v1::JOB_STATE_FAILED ||
      job.state() == v1::JOB_STATE_CANCELLED) {
    return absl::FailedPreconditionError(absl::StrCat(
        operation, ": the job is ", v1::JobState_Name(job.state()), " (its progress is final)"));
  }
  *job.mutable_progress() = progress;
  RETURN_IF_ERROR(WriteJobLocked(job, operation));
  return transaction.Commit();
}

absl::StatusOr<CompletedJob> SqliteJobStore::CompleteJobWithModel(absl::string_view job_id,
                                                                  const v1::Model& model,
                                                                  const JobEdit& edit,
                                                                  const TransitionEvent& event) {
  if (model.name().empty()) return absl::InvalidArgumentError("model.name: must not be empty");
  if (model.version() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model.version: must be 0 (the store assigns versions), got ", model.version()));
  }
  if (model.training_job_id() != job_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("model.training_job_id: must be ", Quoted(job_id), ", got ",
                     Quoted(model.training_job_id())));
  }
  const std::string operation =
      absl::StrCat("complete job ", Quoted(job_id), " with model ", Quoted(model.name()));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(this, operation));
  ASSIGN_OR_RETURN(const v1::Job before, GetJobLocked(job_id));
  ASSIGN_OR_RETURN(v1::Job job,
                   TransitionedJobLocked(job_id, {v1::JOB_STATE_RUNNING, v1::JOB_STATE_CANCELLING},
                                         v1::JOB_STATE_SUCCEEDED, edit));
  // A version this job registered before (e.g. by a verdictd that failed to record the job's
  // success) is the job's result; registering another would train one job into two versions.
  std::optional<v1::Model> registered;
  {
    ASSIGN_OR_RETURN(Statement select,
                     Prepare("SELECT model FROM model_versions WHERE name = ?1 ORDER BY version",
                             operation));
    select.Bind(1, model.name());
    while (true) {
      ASSIGN_OR_RETURN(bool row, select.Step());
      if (!row) break;
      ASSIGN_OR_RETURN(v1::Model existing, ParseStored<v1::Model>(select.Blob(0), operation));
      if (existing.training_job_id() == job_id) {
        registered = std::move(existing);
        break;
      }
    }
  }
  if (!registered.has_value()) {
    ASSIGN_OR_RETURN(registered, InsertModelVersionLocked(model, operation));
  }
  job.mutable_result_model()->set_name(registered->name());
  job.mutable_result_model()->set_version(registered->version());
  RETURN_IF_ERROR(WriteTransitionedJobLocked(job, event, operation));
  ASSIGN_OR_RETURN(const int64_t latest, LatestVersionLocked(registered->name()));
  RETURN_IF_ERROR(transaction.Commit());
  RETURN_IF_ERROR(AttachAliasesLocked(latest, &*registered));
  return CompletedJob{std::move(job), *std::move(registered), before.state()};
}

absl::StatusOr<v1::Job> SqliteJobStore::CompleteEvaluationJob(
    absl::string_view job_id, const v1::EvaluationResult& result, const JobEdit& edit,
    const TransitionEvent& event) {
  if (result.job_id() != job_id) {
    return absl::InvalidArgumentError(absl::StrCat("result.job_id: must be ", Quoted(job_id),
                                                   ", got ", Quoted(result.job_id())));
  }
  const std::string operation = absl::StrCat("complete evaluation job ", Quoted(job_id));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(this, operation));
  RETURN_IF_ERROR(GetModelVersionLocked(result.model_name(), result.model_version()).status());
  ASSIGN_OR_RETURN(v1::Job job,
                   TransitionedJobLocked(job_id, {v1::JOB_STATE_RUNNING, v1::JOB_STATE_CANCELLING},
                                         v1::JOB_STATE_SUCCEEDED, edit));
  *job.mutable_evaluation_result() = result;
  RETURN_IF_ERROR(WriteTransitionedJobLocked(job, event, operation));
  {
    ASSIGN_OR_RETURN(Statement insert,
                     Prepare("INSERT OR REPLACE INTO model_evaluations "
                             "(job_id, name, version, data, create_ns, result) "
                             "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                             operation));
    RETURN_IF_ERROR(insert.Bind(1, job_id)
                        .Bind(2, result.model_name())
                        .Bind(3, result.model_version())
                        .Bind(4, EvaluationDataKey(result))
                        .Bind(5, TimestampNanos(result.create_time()))
                        .BindBlob(6, result.SerializeAsString())
                        .Run());
  }
  RETURN_IF_ERROR(transaction.Commit());
  return job;
}

absl::StatusOr<v1::EvaluationResult> SqliteJobStore::FindEvaluation(
    absl::string_view name, int64_t version, absl::string_view dataset_id) {
  const std::string operation = absl::StrCat("evaluation of model ", Quoted(name), " version ",
                                             version, " on dataset ", Quoted(dataset_id));
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckOpen());
  ASSIGN_OR_RETURN(Statement select,
                   Prepare("SELECT result FROM model_evaluations "
                           "WHERE name = ?1 AND version = ?2 AND data = ?3 "
                           "ORDER BY create_ns DESC, job_id DESC LIMIT 1",
                           operation));
  ASSIGN_OR_RETURN(bool found, select.Bind(1, name)
                                   .Bind(2, version)
                                   .Bind(3, absl::StrCat("dataset:", dataset_id))
                                   .Step());
  if (!found) {
    return absl::NotFoundError(absl::StrCat("model ", Quoted(name), " version ", version,
                                            " has no evaluation on dataset ",
                                            Quoted(dataset_id)));
  }
  return ParseStored<v1::EvaluationResult>(select.Blob(0), operation);
}

absl::StatusOr<Page<v1::Job>> SqliteJobStore::ListJobs(const JobFilter& filter,
                                                       const PageRequest& page) {
  ASSIGN_OR_RETURN(const int64_t mask, StateMask(filter.states));
  ASSIGN_OR_RETURN(const int32_t page_size, EffectivePageSize(page.page_size));
  const std::string filter_key = absl::StrCat(mask, "/", filter.output_model_name);
  ASSIGN_OR_RETURN(const PageCursor cursor,
                   DecodePageToken(page.page_token, "jobs", filter_key));
  const std::string operation = "list jobs";
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(
      Statement select,
      Prepare("SELECT job, last_sequence, create_ns, id FROM jobs "
              "WHERE (?1 = 0 OR ((1 << state) & ?1) != 0) "
              "  AND (?2 = '' OR output_model_name = ?2) "
              "  AND (?3 = 0 OR create_ns < ?4 OR (create_ns = ?4 AND id < ?5)) "
              "ORDER BY create_ns DESC, id DESC LIMIT ?6",
              operation));
  select.Bind(1, mask)
      .Bind(2, filter.output_model_name)
      .Bind(3, int64_t{cursor.present})
      .Bind(4, cursor.number)
      .Bind(5, cursor.key)
      .Bind(6, int64_t{page_size} + 1);  // One more tells whether there is a next page.
  Page<v1::Job> result;
  while (true) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) break;
    if (static_cast<int32_t>(result.items.size()) == page_size) {
      const v1::Job& last = result.items.back();
      result.next_page_token =
          EncodePageToken("jobs", filter_key, last.id(), TimestampNanos(last.create_time()));
      break;
    }
    ASSIGN_OR_RETURN(v1::Job job,
                     ParseStored<v1::Job>(select.Blob(0), absl::StrCat("job ", select.Text(3))));
    job.set_last_sequence(select.Int(1));
    result.items.push_back(std::move(job));
  }
  return result;
}

absl::StatusOr<std::vector<v1::Job>> SqliteJobStore::ListJobsInStates(
    const std::vector<v1::JobState>& states) {
  ASSIGN_OR_RETURN(const int64_t mask, StateMask(states));
  const std::string operation = "list jobs in states";
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Statement select,
                   Prepare("SELECT job, last_sequence, id FROM jobs "
                           "WHERE (?1 = 0 OR ((1 << state) & ?1) != 0) "
                           "ORDER BY create_ns, id",
                           operation));
  select.Bind(1, mask);
  std::vector<v1::Job> jobs;
  while (true) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) break;
    ASSIGN_OR_RETURN(v1::Job job,
                     ParseStored<v1::Job>(select.Blob(0), absl::StrCat("job ", select.Text(2))));
    job.set_last_sequence(select.Int(1));
    jobs.push_back(std::move(job));
  }
  return jobs;
}

// ---------------------------------------------------------------------------------------------
// Metrics events.

absl::StatusOr<int64_t> SqliteJobStore::LastSequenceLocked(absl::string_view job_id) {
  ASSIGN_OR_RETURN(Statement select,
                   Prepare("SELECT last_sequence FROM jobs WHERE id = ?1",
                           absl::StrCat("last sequence of job ", Quoted(job_id))));
  ASSIGN_OR_RETURN(bool found, select.Bind(1, job_id).Step());
  if (!found) return absl::NotFoundError(absl::StrCat("job ", Quoted(job_id), " not found"));
  return select.Int(0);
}

absl::Status SqliteJobStore::AppendEvents(absl::string_view job_id,
                                          const std::vector<v1::MetricsEvent>& events) {
  const std::string operation = absl::StrCat("append events to job ", Quoted(job_id));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(this, operation));
  RETURN_IF_ERROR(AppendEventsLocked(job_id, events, operation));
  return transaction.Commit();
}

absl::Status SqliteJobStore::WriteTransitionedJobLocked(const v1::Job& job,
                                                        const TransitionEvent& event,
                                                        absl::string_view operation) {
  RETURN_IF_ERROR(WriteJobLocked(job, operation));
  if (!event) return absl::OkStatus();
  return AppendEventsLocked(job.id(), {event(job)}, operation);
}

absl::Status SqliteJobStore::AppendEventsLocked(absl::string_view job_id,
                                                const std::vector<v1::MetricsEvent>& events,
                                                absl::string_view operation) {
  ASSIGN_OR_RETURN(const int64_t last_sequence, LastSequenceLocked(job_id));
  int64_t previous = last_sequence;
  for (size_t i = 0; i < events.size(); ++i) {
    const v1::MetricsEvent& event = events[i];
    const std::string field = absl::StrCat("events[", i, "]");
    if (!event.job_id().empty() && event.job_id() != job_id) {
      return absl::InvalidArgumentError(absl::StrCat(
          operation, ": ", field, ".job_id is ", Quoted(event.job_id())));
    }
    if (event.sequence() < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(operation, ": ", field, ".sequence must be >= 1, got ", event.sequence()));
    }
    if (event.sequence() <= last_sequence) {
      return absl::AlreadyExistsError(
          absl::StrCat(operation, ": ", field, ".sequence ", event.sequence(),
                       " is already used (the job's last sequence is ", last_sequence, ")"));
    }
    if (event.sequence() <= previous) {
      return absl::InvalidArgumentError(
          absl::StrCat(operation, ": ", field, ".sequence ", event.sequence(),
                       " is not above the previous event's ", previous));
    }
    std::string bytes;
    if (event.job_id().empty()) {
      v1::MetricsEvent with_job_id = event;
      with_job_id.set_job_id(std::string(job_id));
      bytes = with_job_id.SerializeAsString();
    } else {
      bytes = event.SerializeAsString();
    }
    ASSIGN_OR_RETURN(Statement insert,
                     Prepare("INSERT INTO events (job_id, sequence, step, kind, event) "
                             "VALUES (?1, ?2, ?3, ?4, ?5)",
                             operation));
    RETURN_IF_ERROR(insert.Bind(1, job_id)
                        .Bind(2, event.sequence())
                        .Bind(3, event.step())
                        .Bind(4, int64_t{event.event_case()})
                        .BindBlob(5, bytes)
                        .Run());
    previous = event.sequence();
  }
  if (previous != last_sequence) {
    ASSIGN_OR_RETURN(Statement update,
                     Prepare("UPDATE jobs SET last_sequence = ?2 WHERE id = ?1", operation));
    RETURN_IF_ERROR(update.Bind(1, job_id).Bind(2, previous).Run());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::MetricsEvent>> SqliteJobStore::ReadEvents(
    absl::string_view job_id, int64_t after_sequence, int64_t limit) {
  const std::string operation = absl::StrCat("read events of job ", Quoted(job_id));
  if (limit < 0) {
    return absl::InvalidArgumentError(absl::StrCat(operation, ": limit must be >= 0, got ", limit));
  }
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(LastSequenceLocked(job_id).status());  // NOT_FOUND for an unknown job.
  ASSIGN_OR_RETURN(Statement select,
                   Prepare("SELECT event, sequence FROM events "
                           "WHERE job_id = ?1 AND sequence > ?2 ORDER BY sequence LIMIT ?3",
                           operation));
  // A negative LIMIT means none in SQLite.
  select.Bind(1, job_id).Bind(2, after_sequence).Bind(3, limit == 0 ? int64_t{-1} : limit);
  std::vector<v1::MetricsEvent> events;
  while (true) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) break;
    ASSIGN_OR_RETURN(v1::MetricsEvent event,
                     ParseStored<v1::MetricsEvent>(
                         select.Blob(0), absl::StrCat(operation, ", sequence ", select.Int(1))));
    events.push_back(std::move(event));
  }
  return events;
}

absl::StatusOr<int64_t> SqliteJobStore::LastSequence(absl::string_view job_id) {
  absl::MutexLock lock(&mu_);
  return LastSequenceLocked(job_id);
}

absl::StatusOr<int64_t> SqliteJobStore::SequenceBeforeStep(absl::string_view job_id,
                                                           int64_t step) {
  const std::string operation = absl::StrCat("find step ", step, " in job ", Quoted(job_id));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(const int64_t last_sequence, LastSequenceLocked(job_id));
  ASSIGN_OR_RETURN(Statement select,
                   Prepare("SELECT MIN(sequence) FROM events WHERE job_id = ?1 AND step >= ?2",
                           operation));
  ASSIGN_OR_RETURN(bool row, select.Bind(1, job_id).Bind(2, step).Step());
  if (!row || select.IsNull(0)) return last_sequence;
  return select.Int(0) - 1;
}

absl::StatusOr<DeletedEvents> SqliteJobStore::DeleteEventsAfterStep(absl::string_view job_id,
                                                                    int64_t step) {
  const std::string operation =
      absl::StrCat("delete events after step ", step, " of job ", Quoted(job_id));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(this, operation));
  DeletedEvents result;
  ASSIGN_OR_RETURN(result.last_sequence, LastSequenceLocked(job_id));
  {
    ASSIGN_OR_RETURN(Statement remove,
                     Prepare("DELETE FROM events "
                             "WHERE job_id = ?1 AND step > ?2 AND kind IN (?3, ?4)",
                             operation));
    RETURN_IF_ERROR(remove.Bind(1, job_id)
                        .Bind(2, step)
                        .Bind(3, int64_t{v1::MetricsEvent::kTrain})
                        .Bind(4, int64_t{v1::MetricsEvent::kEval})
                        .Run());
    result.deleted = sqlite3_changes64(db_);
  }
  RETURN_IF_ERROR(transaction.Commit());
  return result;
}

// ---------------------------------------------------------------------------------------------
// Datasets.

absl::Status SqliteJobStore::CreateDataset(const v1::Dataset& dataset) {
  if (dataset.id().empty()) return absl::InvalidArgumentError("dataset.id: must not be empty");
  const std::string operation = absl::StrCat("create dataset ", Quoted(dataset.id()));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Statement insert,
                   Prepare("INSERT INTO datasets (id, create_ns, dataset) VALUES (?1, ?2, ?3)",
                           operation));
  absl::Status status = insert.Bind(1, dataset.id())
                            .Bind(2, TimestampNanos(dataset.create_time()))
                            .BindBlob(3, dataset.SerializeAsString())
                            .Run();
  if (absl::IsAlreadyExists(status)) {
    return absl::AlreadyExistsError(
        absl::StrCat("dataset ", Quoted(dataset.id()), " already exists"));
  }
  return status;
}

absl::StatusOr<v1::Dataset> SqliteJobStore::GetDataset(absl::string_view dataset_id) {
  const std::string operation = absl::StrCat("get dataset ", Quoted(dataset_id));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Statement select,
                   Prepare("SELECT dataset FROM datasets WHERE id = ?1", operation));
  ASSIGN_OR_RETURN(bool found, select.Bind(1, dataset_id).Step());
  if (!found) {
    return absl::NotFoundError(absl::StrCat("dataset ", Quoted(dataset_id), " not found"));
  }
  return ParseStored<v1::Dataset>(select.Blob(0), operation);
}

absl::StatusOr<Page<v1::Dataset>> SqliteJobStore::ListDatasets(const PageRequest& page) {
  ASSIGN_OR_RETURN(const int32_t page_size, EffectivePageSize(page.page_size));
  ASSIGN_OR_RETURN(const PageCursor cursor, DecodePageToken(page.page_token, "datasets", ""));
  const std::string operation = "list datasets";
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Statement select,
                   Prepare("SELECT dataset, id FROM datasets "
                           "WHERE (?1 = 0 OR create_ns < ?2 OR (create_ns = ?2 AND id < ?3)) "
                           "ORDER BY create_ns DESC, id DESC LIMIT ?4",
                           operation));
  select.Bind(1, int64_t{cursor.present})
      .Bind(2, cursor.number)
      .Bind(3, cursor.key)
      .Bind(4, int64_t{page_size} + 1);
  Page<v1::Dataset> result;
  while (true) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) break;
    if (static_cast<int32_t>(result.items.size()) == page_size) {
      const v1::Dataset& last = result.items.back();
      result.next_page_token =
          EncodePageToken("datasets", "", last.id(), TimestampNanos(last.create_time()));
      break;
    }
    ASSIGN_OR_RETURN(v1::Dataset dataset,
                     ParseStored<v1::Dataset>(select.Blob(0),
                                              absl::StrCat("dataset ", select.Text(1))));
    result.items.push_back(std::move(dataset));
  }
  return result;
}

absl::Status SqliteJobStore::DeleteDataset(absl::string_view dataset_id) {
  const std::string operation = absl::StrCat("delete dataset ", Quoted(dataset_id));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(this, operation));
  {
    ASSIGN_OR_RETURN(Statement find,
                     Prepare("SELECT 1 FROM datasets WHERE id = ?1", operation));
    ASSIGN_OR_RETURN(bool exists, find.Bind(1, dataset_id).Step());
    if (!exists) {
      return absl::NotFoundError(absl::StrCat("dataset ", Quoted(dataset_id), " not found"));
    }
  }
  {
    ASSIGN_OR_RETURN(Statement readers,
                     Prepare("SELECT jobs.id, jobs.state FROM job_datasets "
                             "JOIN jobs ON jobs.id = job_datasets.job_id "
                             "WHERE job_datasets.dataset_id = ?1 AND jobs.state IN (?2, ?3, ?4) "
                             "ORDER BY jobs.create_ns, jobs.id LIMIT 1",
                             operation));
    ASSIGN_OR_RETURN(bool in_use, readers.Bind(1, dataset_id)
                                      .Bind(2, int64_t{v1::JOB_STATE_QUEUED})
                                      .Bind(3, int64_t{v1::JOB_STATE_RUNNING})
                                      .Bind(4, int64_t{v1::JOB_STATE_CANCELLING})
                                      .Step());
    if (in_use) {
      return absl::FailedPreconditionError(absl::StrCat(
          "dataset ", Quoted(dataset_id), " is read by job ", Quoted(readers.Text(0)), " (",
          v1::JobState_Name(static_cast<v1::JobState>(readers.Int(1))), ")"));
    }
  }
  {
    ASSIGN_OR_RETURN(Statement remove, Prepare("DELETE FROM datasets WHERE id = ?1", operation));
    RETURN_IF_ERROR(remove.Bind(1, dataset_id).Run());
  }
  return transaction.Commit();
}

// ---------------------------------------------------------------------------------------------
// Model registry.

absl::StatusOr<int64_t> SqliteJobStore::LatestVersionLocked(absl::string_view name) {
  ASSIGN_OR_RETURN(Statement select,
                   Prepare("SELECT MAX(version) FROM model_versions WHERE name = ?1",
                           absl::StrCat("latest version of model ", Quoted(name))));
  ASSIGN_OR_RETURN(bool row, select.Bind(1, name).Step());
  if (!row || select.IsNull(0)) {
    return absl::NotFoundError(absl::StrCat("model ", Quoted(name), " not found"));
  }
  return select.Int(0);
}

absl::Status SqliteJobStore::AttachAliasesLocked(int64_t latest, v1::Model* model) {
  model->clear_aliases();
  ASSIGN_OR_RETURN(Statement select,
                   Prepare("SELECT alias FROM model_aliases WHERE name = ?1 AND version = ?2",
                           absl::StrCat("aliases of model ", Quoted(model->name()), " version ",
                                        model->version())));
  select.Bind(1, model->name()).Bind(2, model->version());
  while (true) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) break;
    model->add_aliases(select.Text(0));
  }
  if (model->version() == latest) model->add_aliases(kLatest);
  std::sort(model->mutable_aliases()->begin(), model->mutable_aliases()->end());

  model->clear_evaluations();
  const std::string operation = absl::StrCat("evaluations of model ", Quoted(model->name()),
                                             " version ", model->version());
  ASSIGN_OR_RETURN(Statement evaluations,
                   Prepare("SELECT data, result FROM model_evaluations "
                           "WHERE name = ?1 AND version = ?2 ORDER BY create_ns DESC, job_id DESC",
                           operation));
  evaluations.Bind(1, model->name()).Bind(2, model->version());
  std::set<std::string> seen;  // the newest per dataset only
  while (true) {
    ASSIGN_OR_RETURN(bool row, evaluations.Step());
    if (!row) break;
    if (!seen.insert(evaluations.Text(0)).second) continue;
    ASSIGN_OR_RETURN(*model->add_evaluations(),
                     ParseStored<v1::EvaluationResult>(evaluations.Blob(1), operation));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Model> SqliteJobStore::GetModelVersionLocked(absl::string_view name,
                                                                int64_t version) {
  const std::string operation =
      absl::StrCat("get model ", Quoted(name), " version ", version);
  ASSIGN_OR_RETURN(const int64_t latest, LatestVersionLocked(name));
  ASSIGN_OR_RETURN(Statement select,
                   Prepare("SELECT model FROM model_versions WHERE name = ?1 AND version = ?2",
                           operation));
  ASSIGN_OR_RETURN(bool found, select.Bind(1, name).Bind(2, version).Step());
  if (!found) {
    return absl::NotFoundError(
        absl::StrCat("model ", Quoted(name), " has no version ", version, " (latest is ",
                     latest, ")"));
  }
  ASSIGN_OR_RETURN(v1::Model model, ParseStored<v1::Model>(select.Blob(0), operation));
  RETURN_IF_ERROR(AttachAliasesLocked(latest, &model));
  return model;
}

absl::StatusOr<int64_t> SqliteJobStore::ResolveAliasLocked(absl::string_view name,
                                                           absl::string_view alias) {
  ASSIGN_OR_RETURN(const int64_t latest, LatestVersionLocked(name));
  if (alias == kLatest) return latest;
  ASSIGN_OR_RETURN(Statement select,
                   Prepare("SELECT version FROM model_aliases WHERE name = ?1 AND alias = ?2",
                           absl::StrCat("resolve alias ", Quoted(alias), " of model ",
                                        Quoted(name))));
  ASSIGN_OR_RETURN(bool found, select.Bind(1, name).Bind(2, alias).Step());
  if (!found) {
    return absl::NotFoundError(
        absl::StrCat("model ", Quoted(name), " has no alias ", Quoted(alias)));
  }
  return select.Int(0);
}

absl::StatusOr<v1::Model> SqliteJobStore::AddModelVersion(const v1::Model& model) {
  if (model.name().empty()) return absl::InvalidArgumentError("model.name: must not be empty");
  if (model.version() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model.version: must be 0 (the store assigns versions), got ", model.version()));
  }
  const std::string operation = absl::StrCat("add a version of model ", Quoted(model.name()));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(this, operation));
  ASSIGN_OR_RETURN(v1::Model stored, InsertModelVersionLocked(model, operation));
  RETURN_IF_ERROR(transaction.Commit());
  stored.add_aliases(kLatest);  // A new version has no alias of its own yet.
  return stored;
}

absl::StatusOr<v1::Model> SqliteJobStore::InsertModelVersionLocked(const v1::Model& model,
                                                                   absl::string_view operation) {
  v1::Model stored = model;
  {
    ASSIGN_OR_RETURN(Statement select,
                     Prepare("SELECT COALESCE(MAX(version), 0) FROM model_versions "
                             "WHERE name = ?1",
                             operation));
    ASSIGN_OR_RETURN(bool row, select.Bind(1, model.name()).Step());
    stored.set_version((row ? select.Int(0) : 0) + 1);
  }
  stored.clear_aliases();
  stored.clear_loaded();
  stored.clear_device();
  {
    ASSIGN_OR_RETURN(Statement insert,
                     Prepare("INSERT INTO model_versions (name, version, model) "
                             "VALUES (?1, ?2, ?3)",
                             operation));
    RETURN_IF_ERROR(insert.Bind(1, stored.name())
                        .Bind(2, stored.version())
                        .BindBlob(3, stored.SerializeAsString())
                        .Run());
  }
  return stored;
}

absl::StatusOr<v1::Model> SqliteJobStore::GetModelVersion(absl::string_view name,
                                                          int64_t version) {
  absl::MutexLock lock(&mu_);
  return GetModelVersionLocked(name, version);
}

absl::StatusOr<v1::Model> SqliteJobStore::GetModel(const v1::ModelRef& ref) {
  absl::MutexLock lock(&mu_);
  int64_t version = 0;
  switch (ref.selector_case()) {
    case v1::ModelRef::kVersion:
      version = ref.version();
      break;
    case v1::ModelRef::kAlias: {
      ASSIGN_OR_RETURN(version, ResolveAliasLocked(ref.name(), ref.alias()));
      break;
    }
    case v1::ModelRef::SELECTOR_NOT_SET: {
      ASSIGN_OR_RETURN(version, LatestVersionLocked(ref.name()));
      break;
    }
  }
  return GetModelVersionLocked(ref.name(), version);
}

absl::StatusOr<Page<v1::Model>> SqliteJobStore::ListModels(absl::string_view name,
                                                           const PageRequest& page) {
  ASSIGN_OR_RETURN(const int32_t page_size, EffectivePageSize(page.page_size));
  ASSIGN_OR_RETURN(const PageCursor cursor, DecodePageToken(page.page_token, "models", name));
  const std::string operation = "list models";
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(
      Statement select,
      Prepare("SELECT model, name, version FROM model_versions "
              "WHERE (?1 = '' OR name = ?1) "
              "  AND (?2 = 0 OR name > ?3 OR (name = ?3 AND version < ?4)) "
              "ORDER BY name, version DESC LIMIT ?5",
              operation));
  select.Bind(1, name)
      .Bind(2, int64_t{cursor.present})
      .Bind(3, cursor.key)
      .Bind(4, cursor.number)
      .Bind(5, int64_t{page_size} + 1);
  Page<v1::Model> result;
  while (true) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) break;
    if (static_cast<int32_t>(result.items.size()) == page_size) {
      const v1::Model& last = result.items.back();
      result.next_page_token = EncodePageToken("models", name, last.name(), last.version());
      break;
    }
    ASSIGN_OR_RETURN(v1::Model model,
                     ParseStored<v1::Model>(select.Blob(0),
                                            absl::StrCat("model ", Quoted(select.Text(1)),
                                                         " version ", select.Int(2))));
    result.items.push_back(std::move(model));
  }
  // Each name's latest version is looked up once per page.
  std::map<std::string, int64_t> latest_by_name;
  for (v1::Model& model : result.items) {
    auto it = latest_by_name.find(model.name());
    if (it == latest_by_name.end()) {
      ASSIGN_OR_RETURN(const int64_t latest, LatestVersionLocked(model.name()));
      it = latest_by_name.emplace(model.name(), latest).first;
    }
    RETURN_IF_ERROR(AttachAliasesLocked(it->second, &model));
  }
  return result;
}

absl::StatusOr<v1::Model> SqliteJobStore::SetAlias(absl::string_view name,
                                                   absl::string_view alias, int64_t version) {
  if (alias.empty() || alias == kLatest) {
    return absl::InvalidArgumentError(absl::StrCat(
        "alias: ", Quoted(alias), " cannot be set (\"latest\" always means the highest version)"));
  }
  const std::string operation =
      absl::StrCat("set alias ", Quoted(alias), " of model ", Quoted(name), " to version ", version);
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(this, operation));
  RETURN_IF_ERROR(GetModelVersionLocked(name, version).status());  // NOT_FOUND names what.
  {
    ASSIGN_OR_RETURN(Statement upsert,
                     Prepare("INSERT INTO model_aliases (name, alias, version) "
                             "VALUES (?1, ?2, ?3) "
                             "ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version",
                             operation));
    RETURN_IF_ERROR(upsert.Bind(1, name).Bind(2, alias).Bind(3, version).Run());
  }
  ASSIGN_OR_RETURN(v1::Model model, GetModelVersionLocked(name, version));
  RETURN_IF_ERROR(transaction.Commit());
  return model;
}

absl::StatusOr<v1::Model> SqliteJobStore::DeleteAlias(absl::string_view name,
                                                      absl::string_view alias) {
  if (alias == kLatest) {
    return absl::InvalidArgumentError(
        "alias: \"latest\" cannot be deleted (it always means the highest version)");
  }
  const std::string operation =
      absl::StrCat("delete alias ", Quoted(alias), " of model ", Quoted(name));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(this, operation));
  ASSIGN_OR_RETURN(const int64_t version, ResolveAliasLocked(name, alias));
  {
    ASSIGN_OR_RETURN(Statement remove,
                     Prepare("DELETE FROM model_aliases WHERE name = ?1 AND alias = ?2",
                             operation));
    RETURN_IF_ERROR(remove.Bind(1, name).Bind(2, alias).Run());
  }
  ASSIGN_OR_RETURN(v1::Model model, GetModelVersionLocked(name, version));
  RETURN_IF_ERROR(transaction.Commit());
  return model;
}

absl::StatusOr<int64_t> SqliteJobStore::ResolveAlias(absl::string_view name,
                                                     absl::string_view alias) {
  absl::MutexLock lock(&mu_);
  return ResolveAliasLocked(name, alias);
}

absl::StatusOr<v1::Model> SqliteJobStore::DeleteModelVersion(absl::string_view name,
                                                            int64_t version) {
  const std::string operation =
      absl::StrCat("delete version ", version, " of model ", Quoted(name));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(this, operation));
  ASSIGN_OR_RETURN(v1::Model model, GetModelVersionLocked(name, version));  // NOT_FOUND
  if (!model.aliases().empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model ", Quoted(name), " version ", version, " is what alias ",
        Quoted(model.aliases(0)), " points at",
        model.aliases(0) == kLatest ? " (the highest version cannot be deleted)"
                                    : "; move or delete the alias first"));
  }
  for (const char* sql : {"DELETE FROM model_evaluations WHERE name = ?1 AND version = ?2",
                          "DELETE FROM model_versions WHERE name = ?1 AND version = ?2"}) {
    ASSIGN_OR_RETURN(Statement remove, Prepare(sql, operation));
    RETURN_IF_ERROR(remove.Bind(1, name).Bind(2, version).Run());
  }
  RETURN_IF_ERROR(transaction.Commit());
  return model;
}

}  // namespace verdict::server
