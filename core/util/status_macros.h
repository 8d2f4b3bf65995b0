// Status propagation helpers.
//
// Debian's Abseil (20220623) ships no status macros, so verdict keeps these two. They work with
// any expression that yields an absl::Status / absl::StatusOr<T>.
//
// Example:
//   absl::StatusOr<Config> LoadConfig(const std::string& path) {
//     ASSIGN_OR_RETURN(std::string text, ReadFile(path));
//     RETURN_IF_ERROR(Validate(text));
//     return Parse(text);
//   }
#ifndef VERDICT_CORE_UTIL_STATUS_MACROS_H_
#define VERDICT_CORE_UTIL_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define VERDICT_STATUS_CONCAT_INNER(a, b) a##b
#define VERDICT_STATUS_CONCAT(a, b) VERDICT_STATUS_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                                       \
  do {                                                              \
    ::absl::Status verdict_status_ = (expr);                        \
    if (!verdict_status_.ok()) return verdict_status_;              \
  } while (false)

#define ASSIGN_OR_RETURN(lhs, expr)                                                  \
  VERDICT_ASSIGN_OR_RETURN_IMPL(VERDICT_STATUS_CONCAT(verdict_statusor_, __LINE__), \
                                lhs, expr)

#define VERDICT_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // VERDICT_CORE_UTIL_STATUS_MACROS_H_
