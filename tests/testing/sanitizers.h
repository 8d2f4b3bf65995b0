// VERDICT_SANITIZER_ALLOCATOR is 1 in a tree built with ASan or TSan (scripts/sanitize.sh),
// whose runtimes replace malloc: glibc's heap statistics see nothing, and a process's resident
// set is mostly redzones, shadow memory and the freed-memory quarantine. Memory tests measure
// in the uninstrumented build and only report under the sanitizers.
#pragma once

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define VERDICT_SANITIZER_ALLOCATOR 1
#endif
#endif
#ifndef VERDICT_SANITIZER_ALLOCATOR
#define VERDICT_SANITIZER_ALLOCATOR 0
#endif
