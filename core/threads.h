/*
 * core/threads.h — the OpenMP queries fast/ uses, with their single-thread
 * answers when r1lab is built without OpenMP.
 */
#ifndef R1LAB_CORE_THREADS_H
#define R1LAB_CORE_THREADS_H

#ifdef _OPENMP
#include <omp.h>
#endif

/* Threads a parallel region started here would use. */
static inline int r1_thread_count(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* This thread's index inside a parallel region (0 outside one). */
static inline int r1_thread_index(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

#endif
