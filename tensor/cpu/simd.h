#pragma once
// Run-time selection of the widest vector ISA for a hot loop, without global -m flags: on
// x86-64 with GCC, MG_VECTORIZE compiles a function for AVX-512, x86-64-v3 (AVX2 with FMA),
// AVX2 alone and baseline, and the loader picks one (an ifunc) on first call. Elsewhere it
// expands to nothing and the function is compiled once for the target's baseline.
// x86-64-v3 is its own clone because a target_clones entry names one feature: an "avx2" clone
// may not use FMA, and the arithmetic-bound loops (exp and the functions on it) run a quarter
// slower without it. "avx2" stays for CPUs that report AVX2 but not all of x86-64-v3.
//
// The AVX-512 and x86-64-v3 clones may contract a * b + c into one FMA (g++ contracts by default
// in C++), so their last bit can differ from the other clones'. Kernels that must reproduce a
// composite's rounding exactly (the optimizer step) are not cloned.
// g++ only: clang (14) does not multiversion function templates, so there the loops are
// compiled once for the baseline ISA. Not under ThreadSanitizer either: the loader runs the
// (instrumented) ifunc resolvers before the sanitizer's runtime is up, and they crash.
#if defined(__x86_64__) && defined(__ELF__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(MG_NO_TARGET_CLONES) && !defined(__SANITIZE_THREAD__)
#define MG_VECTORIZE __attribute__((target_clones("avx512f", "arch=x86-64-v3", "avx2", "default")))
#else
#define MG_VECTORIZE
#endif

// Before a loop whose pointers never overlap although the compiler cannot prove it (a kernel
// writing 16 output streams from 16 inputs): g++ vectorizes it without run-time overlap checks.
#if defined(__GNUC__) && !defined(__clang__)
#define MG_NO_OVERLAP _Pragma("GCC ivdep")
#else
#define MG_NO_OVERLAP
#endif
