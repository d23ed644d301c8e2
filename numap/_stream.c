/*
 * numap._stream: copy a large buffer into another with streaming stores.
 *
 * An ordinary copy (memcpy, which numpy's copyto uses) writes through the
 * cache: the processor first reads every line of the destination it is about
 * to overwrite, so a copy from memory to memory moves three bytes for each
 * one copied. Streaming (non-temporal) stores write whole lines straight to
 * memory without reading them first. The C library switches to them only
 * for copies larger than about the last-level cache (240 MiB on a 32 MiB
 * cache), where numap's copies into shared-memory segments, from 64 KiB to a
 * few hundred MiB, stay below.
 *
 * The copy leaves the destination out of the cache, which is what numap
 * wants for a segment that another process reads next; below STREAM_MIN
 * bytes the ordinary copy is used, since the reader may then find the data
 * in the shared cache.
 *
 * x86-64 has streaming stores in its baseline (SSE2); the AVX version is used
 * where the processor has AVX. Elsewhere the copy is memcpy.
 *
 * Python side (see numap/_shm.py):
 *   copy(target, source)   target[:] = source, without the GIL
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_STREAM 1
#else
#define HAVE_STREAM 0
#endif

#define STREAM_MIN ((size_t)1 << 20)
#define LINE 64

#if HAVE_STREAM

/* Copy the whole blocks (128 bytes here, 64 below) of the ``n`` bytes at ``src``
 * to ``dst`` (aligned to a cache line) with streaming stores; return the bytes
 * copied (the caller copies the rest). */
__attribute__((target("avx")))
static size_t stream_avx(char *dst, const char *src, size_t n) {
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(src + i + 32));
        __m256i c = _mm256_loadu_si256((const __m256i *)(src + i + 64));
        __m256i d = _mm256_loadu_si256((const __m256i *)(src + i + 96));
        _mm256_stream_si256((__m256i *)(dst + i), a);
        _mm256_stream_si256((__m256i *)(dst + i + 32), b);
        _mm256_stream_si256((__m256i *)(dst + i + 64), c);
        _mm256_stream_si256((__m256i *)(dst + i + 96), d);
    }
    return i;
}

static size_t stream_sse2(char *dst, const char *src, size_t n) {
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(src + i + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(src + i + 32));
        __m128i d = _mm_loadu_si128((const __m128i *)(src + i + 48));
        _mm_stream_si128((__m128i *)(dst + i), a);
        _mm_stream_si128((__m128i *)(dst + i + 16), b);
        _mm_stream_si128((__m128i *)(dst + i + 32), c);
        _mm_stream_si128((__m128i *)(dst + i + 48), d);
    }
    return i;
}

static int has_avx = -1;

static void copy_bytes(char *dst, const char *src, size_t n) {
    if (n < STREAM_MIN) {
        memcpy(dst, src, n);
        return;
    }
    size_t head = (LINE - ((uintptr_t)dst & (LINE - 1))) & (LINE - 1);
    memcpy(dst, src, head);
    dst += head;
    src += head;
    n -= head;
    size_t done = has_avx ? stream_avx(dst, src, n) : stream_sse2(dst, src, n);
    _mm_sfence(); /* the streamed lines reach memory before anything after the copy */
    memcpy(dst + done, src + done, n - done);
}

#else

static int has_avx = 0;

static void copy_bytes(char *dst, const char *src, size_t n) { memcpy(dst, src, n); }

#endif

static PyObject *stream_copy(PyObject *self, PyObject *args) {
    Py_buffer target, source;
    if (!PyArg_ParseTuple(args, "w*y*:copy", &target, &source))
        return NULL;
    PyObject *result = NULL;
    if (!PyBuffer_IsContiguous(&target, 'C') || !PyBuffer_IsContiguous(&source, 'C')) {
        PyErr_SetString(PyExc_ValueError, "copy: target and source must be contiguous");
    } else if (target.len != source.len) {
        PyErr_Format(PyExc_ValueError,
                     "copy: target has %zd bytes, source %zd: they must be the same size",
                     target.len, source.len);
    } else {
        Py_BEGIN_ALLOW_THREADS
        copy_bytes((char *)target.buf, (const char *)source.buf, (size_t)target.len);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&target);
    PyBuffer_Release(&source);
    return result;
}

static PyMethodDef methods[] = {
    {"copy", stream_copy, METH_VARARGS,
     "copy(target, source, /): target[:] = source (same size), with streaming stores "
     "from 1 MiB, without the GIL."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "numap._stream",
    "Copies of large buffers with streaming stores, which skip the cache.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__stream(void) {
#if HAVE_STREAM
    __builtin_cpu_init();
    has_avx = __builtin_cpu_supports("avx");
#endif
    PyObject *mod = PyModule_Create(&module);
    if (mod != NULL && PyModule_AddIntConstant(mod, "STREAM_MIN", (long)STREAM_MIN) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    if (mod != NULL && PyModule_AddIntConstant(mod, "streaming", HAVE_STREAM) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
