// InspectionToProto: a core DatasetInspection (core/data/dataset_inspection.h) as the API's
// v1::DatasetInspection -- the one home of that mapping, shared by the server's InspectDataset
// and by the CLI, which inspects local files itself with core/data (no LibTorch, no server).
//
// Its own small library (verdict_inspection_proto: verdict_data + verdict_proto) so that the
// CLI can link it without the rest of the server. Pure functions: thread-safe.
#ifndef VERDICT_SERVER_DATASET_INSPECTION_PROTO_H_
#define VERDICT_SERVER_DATASET_INSPECTION_PROTO_H_

#include <string>

#include "core/data/dataset_inspection.h"
#include "verdict/v1/datasets.pb.h"

namespace verdict::server {

// Layouts with pairs, most common first; the invalid records as listed; lengths when measured
// (TokenLengths.model and version are the caller's to set).
v1::DatasetInspection InspectionToProto(const DatasetInspection& report);

// A reader's "NAME:LINE: problem" for the file `name` as "line LINE: problem" (or the bare
// problem when it has no line); other messages unchanged.
std::string WithoutFileName(const std::string& message, const std::string& name);

}  // namespace verdict::server

#endif  // VERDICT_SERVER_DATASET_INSPECTION_PROTO_H_
