// Part of libverdict_sentencepiece.so in ASan and TSan builds only (VERDICT_SANITIZE): the C and
// C++ allocation functions, each forwarding to the sanitizer runtime's in the executable.
//
// Why: the module is loaded with RTLD_DEEPBIND (sentencepiece_backend.h), so the module and
// sentencepiece look a symbol up in their own dependencies (libc, libstdc++) before the
// executable, where the sanitizer defines malloc and operator new. Without these definitions
// they would allocate from libc and libstdc++ while the host frees with the sanitizer (and the
// other way round): strings and vectors cross the boundary in both directions. Defined and
// exported here (sentencepiece_module_sanitizer.map), they are the first definitions in the
// module's scope, so everything the module loads allocates from the one heap the sanitizer
// tracks, with the right kind (malloc or new) recorded for each block.
//
// How the runtime's functions are found: the malloc family through the runtime's
// __interceptor_* names (bound at load time; no call can happen before they are), operator
// new/delete, which have no second name, through dlsym() on the main program on first use
// (dlsym may call malloc, which is forwarded without going through operator new).
//
// Thread safety: the forwarders are as thread-safe as the functions they forward to; the lazy
// lookups are function-local statics.
#include <dlfcn.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <new>

extern "C" {
// Weak: the module must link without the runtime (-Wl,--no-undefined); the executable that
// loads it always defines them (ASan and TSan both intercept these).
void* __interceptor_malloc(size_t size) __attribute__((weak));
void __interceptor_free(void* ptr) __attribute__((weak));
void* __interceptor_calloc(size_t count, size_t size) __attribute__((weak));
void* __interceptor_realloc(void* ptr, size_t size) __attribute__((weak));
void* __interceptor_reallocarray(void* ptr, size_t count, size_t size) __attribute__((weak));
void* __interceptor_memalign(size_t alignment, size_t size) __attribute__((weak));
int __interceptor_posix_memalign(void** out, size_t alignment, size_t size)
    __attribute__((weak));
void* __interceptor_aligned_alloc(size_t alignment, size_t size) __attribute__((weak));
void* __interceptor_valloc(size_t size) __attribute__((weak));
void* __interceptor_pvalloc(size_t size) __attribute__((weak));
size_t __interceptor_malloc_usable_size(void* ptr) __attribute__((weak));
}

namespace {

[[noreturn]] void Die(const char* what) {
  constexpr char kPrefix[] = "libverdict_sentencepiece.so (sanitizer build): no ";
  (void)!write(2, kPrefix, sizeof(kPrefix) - 1);
  for (const char* p = what; *p != '\0'; ++p) (void)!write(2, p, 1);
  (void)!write(2, " in the executable\n", 19);
  abort();
}

template <typename Fn>
Fn Required(Fn fn, const char* name) {
  if (fn == nullptr) Die(name);
  return fn;
}

// The executable's (the sanitizer's) definition of `mangled`. dlsym on the main program's
// handle searches the executable first, not the module's DEEPBIND scope (which would find
// the forwarder itself).
template <typename Fn>
Fn MainProgramSymbol(const char* mangled) {
  void* main_program = dlopen(nullptr, RTLD_NOW);
  void* symbol = main_program != nullptr ? dlsym(main_program, mangled) : nullptr;
  if (symbol == nullptr) Die(mangled);
  return reinterpret_cast<Fn>(symbol);
}

#define VERDICT_FORWARD_CXX(mangled, result, ...)                                   \
  using mangled##_fn = result (*)(__VA_ARGS__);                                     \
  mangled##_fn mangled##_target() {                                                 \
    static const mangled##_fn target = MainProgramSymbol<mangled##_fn>(#mangled);   \
    return target;                                                                  \
  }

VERDICT_FORWARD_CXX(_Znwm, void*, size_t)
VERDICT_FORWARD_CXX(_Znam, void*, size_t)
VERDICT_FORWARD_CXX(_ZnwmRKSt9nothrow_t, void*, size_t, const std::nothrow_t&)
VERDICT_FORWARD_CXX(_ZnamRKSt9nothrow_t, void*, size_t, const std::nothrow_t&)
VERDICT_FORWARD_CXX(_ZnwmSt11align_val_t, void*, size_t, std::align_val_t)
VERDICT_FORWARD_CXX(_ZnamSt11align_val_t, void*, size_t, std::align_val_t)
VERDICT_FORWARD_CXX(_ZnwmSt11align_val_tRKSt9nothrow_t, void*, size_t, std::align_val_t,
                    const std::nothrow_t&)
VERDICT_FORWARD_CXX(_ZnamSt11align_val_tRKSt9nothrow_t, void*, size_t, std::align_val_t,
                    const std::nothrow_t&)
VERDICT_FORWARD_CXX(_ZdlPv, void, void*)
VERDICT_FORWARD_CXX(_ZdaPv, void, void*)
VERDICT_FORWARD_CXX(_ZdlPvm, void, void*, size_t)
VERDICT_FORWARD_CXX(_ZdaPvm, void, void*, size_t)
VERDICT_FORWARD_CXX(_ZdlPvRKSt9nothrow_t, void, void*, const std::nothrow_t&)
VERDICT_FORWARD_CXX(_ZdaPvRKSt9nothrow_t, void, void*, const std::nothrow_t&)
VERDICT_FORWARD_CXX(_ZdlPvSt11align_val_t, void, void*, std::align_val_t)
VERDICT_FORWARD_CXX(_ZdaPvSt11align_val_t, void, void*, std::align_val_t)
VERDICT_FORWARD_CXX(_ZdlPvmSt11align_val_t, void, void*, size_t, std::align_val_t)
VERDICT_FORWARD_CXX(_ZdaPvmSt11align_val_t, void, void*, size_t, std::align_val_t)
VERDICT_FORWARD_CXX(_ZdlPvSt11align_val_tRKSt9nothrow_t, void, void*, std::align_val_t,
                    const std::nothrow_t&)
VERDICT_FORWARD_CXX(_ZdaPvSt11align_val_tRKSt9nothrow_t, void, void*, std::align_val_t,
                    const std::nothrow_t&)

#undef VERDICT_FORWARD_CXX

}  // namespace

#define VERDICT_VISIBLE __attribute__((visibility("default")))

extern "C" {
VERDICT_VISIBLE void* malloc(size_t size) {
  return Required(__interceptor_malloc, "malloc")(size);
}
VERDICT_VISIBLE void free(void* ptr) { Required(__interceptor_free, "free")(ptr); }
VERDICT_VISIBLE void* calloc(size_t count, size_t size) {
  return Required(__interceptor_calloc, "calloc")(count, size);
}
VERDICT_VISIBLE void* realloc(void* ptr, size_t size) {
  return Required(__interceptor_realloc, "realloc")(ptr, size);
}
VERDICT_VISIBLE void* reallocarray(void* ptr, size_t count, size_t size) {
  return Required(__interceptor_reallocarray, "reallocarray")(ptr, count, size);
}
VERDICT_VISIBLE void* memalign(size_t alignment, size_t size) {
  return Required(__interceptor_memalign, "memalign")(alignment, size);
}
VERDICT_VISIBLE int posix_memalign(void** out, size_t alignment, size_t size) {
  return Required(__interceptor_posix_memalign, "posix_memalign")(out, alignment, size);
}
VERDICT_VISIBLE void* aligned_alloc(size_t alignment, size_t size) {
  return Required(__interceptor_aligned_alloc, "aligned_alloc")(alignment, size);
}
VERDICT_VISIBLE void* valloc(size_t size) {
  return Required(__interceptor_valloc, "valloc")(size);
}
VERDICT_VISIBLE void* pvalloc(size_t size) {
  return Required(__interceptor_pvalloc, "pvalloc")(size);
}
VERDICT_VISIBLE size_t malloc_usable_size(void* ptr) {
  return Required(__interceptor_malloc_usable_size, "malloc_usable_size")(ptr);
}
}  // extern "C"

VERDICT_VISIBLE void* operator new(size_t size) { return _Znwm_target()(size); }
VERDICT_VISIBLE void* operator new[](size_t size) { return _Znam_target()(size); }
VERDICT_VISIBLE void* operator new(size_t size, const std::nothrow_t& tag) noexcept {
  return _ZnwmRKSt9nothrow_t_target()(size, tag);
}
VERDICT_VISIBLE void* operator new[](size_t size, const std::nothrow_t& tag) noexcept {
  return _ZnamRKSt9nothrow_t_target()(size, tag);
}
VERDICT_VISIBLE void* operator new(size_t size, std::align_val_t align) {
  return _ZnwmSt11align_val_t_target()(size, align);
}
VERDICT_VISIBLE void* operator new[](size_t size, std::align_val_t align) {
  return _ZnamSt11align_val_t_target()(size, align);
}
VERDICT_VISIBLE void* operator new(size_t size, std::align_val_t align,
                                   const std::nothrow_t& tag) noexcept {
  return _ZnwmSt11align_val_tRKSt9nothrow_t_target()(size, align, tag);
}
VERDICT_VISIBLE void* operator new[](size_t size, std::align_val_t align,
                                     const std::nothrow_t& tag) noexcept {
  return _ZnamSt11align_val_tRKSt9nothrow_t_target()(size, align, tag);
}
VERDICT_VISIBLE void operator delete(void* ptr) noexcept { _ZdlPv_target()(ptr); }
VERDICT_VISIBLE void operator delete[](void* ptr) noexcept { _ZdaPv_target()(ptr); }
VERDICT_VISIBLE void operator delete(void* ptr, size_t size) noexcept {
  _ZdlPvm_target()(ptr, size);
}
VERDICT_VISIBLE void operator delete[](void* ptr, size_t size) noexcept {
  _ZdaPvm_target()(ptr, size);
}
VERDICT_VISIBLE void operator delete(void* ptr, const std::nothrow_t& tag) noexcept {
  _ZdlPvRKSt9nothrow_t_target()(ptr, tag);
}
VERDICT_VISIBLE void operator delete[](void* ptr, const std::nothrow_t& tag) noexcept {
  _ZdaPvRKSt9nothrow_t_target()(ptr, tag);
}
VERDICT_VISIBLE void operator delete(void* ptr, std::align_val_t align) noexcept {
  _ZdlPvSt11align_val_t_target()(ptr, align);
}
VERDICT_VISIBLE void operator delete[](void* ptr, std::align_val_t align) noexcept {
  _ZdaPvSt11align_val_t_target()(ptr, align);
}
VERDICT_VISIBLE void operator delete(void* ptr, size_t size, std::align_val_t align) noexcept {
  _ZdlPvmSt11align_val_t_target()(ptr, size, align);
}
VERDICT_VISIBLE void operator delete[](void* ptr, size_t size, std::align_val_t align) noexcept {
  _ZdaPvmSt11align_val_t_target()(ptr, size, align);
}
VERDICT_VISIBLE void operator delete(void* ptr, std::align_val_t align,
                                     const std::nothrow_t& tag) noexcept {
  _ZdlPvSt11align_val_tRKSt9nothrow_t_target()(ptr, align, tag);
}
VERDICT_VISIBLE void operator delete[](void* ptr, std::align_val_t align,
                                       const std::nothrow_t& tag) noexcept {
  _ZdaPvSt11align_val_tRKSt9nothrow_t_target()(ptr, align, tag);
}
