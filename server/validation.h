// Request-field checks shared by the services. Each returns INVALID_ARGUMENT whose message
// starts with `field` (the field's path in the request), as common.proto specifies.
// Thread-safe free functions.
#ifndef VERDICT_SERVER_VALIDATION_H_
#define VERDICT_SERVER_VALIDATION_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "verdict/v1/common.pb.h"

namespace verdict::server {

// 1-64 characters of [a-z0-9._-], starting with a letter or digit.
absl::Status ValidateModelName(absl::string_view field, absl::string_view name);
// 1-32 characters of [a-z0-9_-], starting with a letter; "latest" only if allow_latest.
absl::Status ValidateAlias(absl::string_view field, absl::string_view alias, bool allow_latest);
// name valid; version >= 1 or alias valid (latest allowed).
absl::Status ValidateModelRef(absl::string_view field, const v1::ModelRef& ref);
// "name", "name:version" or "name:alias" (as --preload_models and HTTP's ?model= spell a
// model) as a ModelRef; validate it with ValidateModelRef.
v1::ModelRef ParseModelSpec(absl::string_view spec);
// Opaque server ids: 1-64 characters of [A-Za-z0-9_-].
absl::Status ValidateId(absl::string_view field, absl::string_view id);
// Integer in [lo, hi].
absl::Status ValidateRange(absl::string_view field, int64_t value, int64_t lo, int64_t hi);

// `value` in double quotes for an error message, cut to its first 64 bytes (with the total
// size said) so that a hostile value never makes a message larger than a client accepts.
std::string QuoteForMessage(absl::string_view value);

}  // namespace verdict::server

#endif  // VERDICT_SERVER_VALIDATION_H_
