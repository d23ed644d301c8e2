/*
 * numap._stream: copy a large buffer into another with streaming stores.
 *
 * An ordinary copy (memcpy, which numpy's copyto uses) writes through the
 * cache: the processor first reads every line of the destination it is about
 * to overwrite, so a copy from memory to memory moves three bytes for each
 * one copied. Streaming (non-temporal) stores write whole lines straight to
 * memory without reading them first. The C library switches to them only
 * for copies larger than 3/4 of its estimate of the shared cache (240 MiB on
 * the benchmark machine), where numap's copies into shared-memory segments,
 * from 64 KiB to a few hundred MiB, stay below.
 *
 * The copy leaves the destination out of the cache, so the process that
 * reads the segment next reads it from memory: that pays only where the
 * cache could not have held it until then. numap calls this copy for copies
 * of at least an eighth of the last-level cache (numap._shm.stream_from) and
 * numpy's otherwise; here, below STREAM_MIN bytes the ordinary copy is used
 * whatever the caller.
 *
 * x86-64 has streaming stores in its baseline (SSE2); the AVX version is used
 * where the processor has AVX. Elsewhere the copy is memcpy.
 *
 * Buffers that overlap are copied with memmove, as numpy would copy them.
 *
 * Python side (see numap/_shm.py):
 *   copy(target, source)   target[:] = source, without the GIL
 *   _use_avx(flag)         for the tests: take the AVX path or the SSE2 one
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

static int has_avx = 0;  /* set once, when the module is loaded */
static int use_avx = 0;

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
    size_t done = use_avx ? stream_avx(dst, src, n) : stream_sse2(dst, src, n);
    _mm_sfence(); /* the streamed lines reach memory before anything after the copy */
    memcpy(dst + done, src + done, n - done);
}

#else

static void copy_bytes(char *dst, const char *src, size_t n) { memcpy(dst, src, n); }

#endif

static int overlap(const char *a, const char *b, size_t n) {
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return n && (x < y ? y - x < n : x - y < n);
}

static PyObject *stream_copy(PyObject *self, PyObject *args) {
    Py_buffer target, source;
    if (!PyArg_ParseTuple(args, "w*y*:copy", &target, &source))
        return NULL;
    /* (w* and y* take contiguous buffers only: the exporter refuses others) */
    PyObject *result = NULL;
    if (target.len != source.len) {
        PyErr_Format(PyExc_ValueError,
                     "copy: target has %zd bytes, source %zd: they must be the same size",
                     target.len, source.len);
    } else {
        char *dst = (char *)target.buf;
        const char *src = (const char *)source.buf;
        size_t n = (size_t)target.len;
        Py_BEGIN_ALLOW_THREADS
        if (overlap(dst, src, n))
            memmove(dst, src, n);
        else
            copy_bytes(dst, src, n);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&target);
    PyBuffer_Release(&source);
    return result;
}

/* For the tests: the SSE2 path is the only one of processors without AVX. */
static PyObject *stream_use_avx(PyObject *self, PyObject *arg) {
    int flag = PyObject_IsTrue(arg);
    if (flag < 0)
        return NULL;
#if HAVE_STREAM
    int before = use_avx;
    use_avx = flag && has_avx;
    return PyBool_FromLong(before);
#else
    return Py_NewRef(Py_False);
#endif
}

static PyMethodDef methods[] = {
    {"copy", stream_copy, METH_VARARGS,
     "copy(target, source, /): target[:] = source (same size), with streaming stores "
     "from 1 MiB, without the GIL."},
    {"_use_avx", stream_use_avx, METH_O,
     "_use_avx(flag, /): for the tests, take the AVX path (if the processor has AVX) "
     "or the SSE2 one; returns whether the AVX path was taken before."},
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
    use_avx = has_avx;
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
