/*
 * numap._alloc: a numpy memory handler (NEP 49) that places a worker
 * process's large arrays in POSIX shared-memory segments.
 *
 * A stage that makes a new array (``a + 1``) would otherwise build it in the
 * worker's private memory, and the worker would then copy it into a segment
 * to send it. With this handler installed, numpy allocates every array of at
 * least ``threshold`` bytes in a segment of its own (reusing freed segments,
 * whose pages are already mapped), so the result can go back as it is: the
 * message names the segment, and nothing is copied.
 *
 * A segment, once made, is in one of three states:
 *
 *   live   an array of this process owns it (numpy has not freed it);
 *   lent   a message named it and its receiver has not given it back;
 *   free   neither: kept (mapped, pages in place) for the next allocation,
 *          up to ``keep`` bytes of them; beyond that it is removed.
 *
 * An allocation takes the smallest free segment that fits, and of those the
 * one last allocated: its lines are the likeliest to be in the cache still
 * (an array written into a segment of cold lines fetches each line from
 * memory first). Not the one last freed: a segment a receiver gives back was
 * written long before the scratch array freed just now.
 *
 * live and lent may both hold: a segment is reused only when neither does,
 * and a lent one stays mapped until it is given back.
 *
 * Borrowed segments: a worker that has dropped an item received in a segment
 * of the NuMap's own pool lends that segment to this allocator until its
 * batch is done (borrow()). It is the first choice for the next array of its
 * size (the item's lines were just read: the item's next stage writes its
 * array there instead of into a segment of cold lines), and a result made in
 * it goes back to the NuMap in it, as an item changed in place does. Python
 * keeps the mapping; here a borrowed segment is never unlinked nor unmapped,
 * and borrowed() forgets those no array is on once the batch is sent (the
 * worker then gives them back to their pool), naming those still live (kept
 * until their arrays go).
 *
 * Smaller allocations, ``np.zeros`` of more than LAZY_ZEROS bytes (left to the
 * C library, whose zero pages come only when touched), and every allocation
 * once the handler is closed or in a child forked from this process (until
 * it installs the handler itself), go to the C library as numpy's own handler
 * would send them.
 *
 * fork(): a child must get a copy of the arrays, as with private memory, not
 * a mapping shared with its parent. Before the fork every segment is marked
 * not to be inherited, and the live ones are copied into private snapshots;
 * in the child, each snapshot is moved to its segment's address (so the
 * arrays on it stay valid, now private), and the others are forgotten. The
 * parent drops its snapshots. A segment whose snapshot could not be made is
 * inherited shared, as a last resort.
 *
 * No Python object is made while the lock is held: making one may run the
 * garbage collector, which may free an array, which takes the lock.
 *
 * Python side (see numap/_shm.py):
 *   install(prefix, threshold, keep)  set the handler in the current context
 *   block(address, nbytes)            (name, capacity) of a whole live segment
 *   lend(address) / unlend(address)   a message names it / it does not after all
 *   live(address)                     whether numpy still has the array
 *   give_back(name)                   its receiver dropped it
 *   borrow(name, address, capacity)   a segment received from another pool, mapped by
 *                                     Python and dropped here, to make arrays in
 *   borrowed()                        forget the borrowed segments no array is on (a
 *                                     message may have taken one back); the others' names
 *   close()                           remove every segment; allocate from the C library
 *   stats()                           counts, for the tests
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define NPY_NO_DEPRECATED_API NPY_1_22_API_VERSION
#define NPY_TARGET_VERSION NPY_1_22_API_VERSION
#include <numpy/arrayobject.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#define PAGE ((size_t)1 << 16)
#define NAME_SIZE 96
#define LAZY_ZEROS ((size_t)64 << 20)

typedef struct segment {
    void *address;
    size_t size;      /* what the allocation asked for */
    size_t capacity;  /* what is mapped */
    int live;
    int lent;
    int foreign;      /* its name is not ours (a forked child's copy, or closed) */
    int shared;       /* mapped from its segment (not a forked child's private copy) */
    int borrowed;     /* a segment received from another pool, mapped by Python: never
                         unlinked nor unmapped here, and back to its pool (borrowed()) */
    unsigned long long given;  /* when it was last allocated: a count of allocations */
    void *snapshot;   /* during fork(): the private copy the child takes */
    char name[NAME_SIZE];
} segment;

/* Segments in use (live or lent) and free ones: few at a time, scanned. */
typedef struct {
    segment **items;
    size_t count;
    size_t room;
} segment_list;

static struct {
    pthread_mutex_t lock;
    int installed;
    int closed;
    int forked;          /* in a child forked since install(): not installed here */
    size_t threshold;
    size_t keep;
    size_t free_bytes;
    unsigned long long serial;
    unsigned long long allocations;
    char prefix[NAME_SIZE - 24];
    segment_list used;
    segment_list spare;
    unsigned long long made, reused, removed, fallbacks;
} S = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, (size_t)-1, 0, 0, 0, 0, "", {0}, {0}, 0, 0, 0, 0};

static int list_add(segment_list *list, segment *seg) {
    if (list->count == list->room) {
        size_t room = list->room ? 2 * list->room : 16;
        segment **items = realloc(list->items, room * sizeof(segment *));
        if (items == NULL) return -1;
        list->items = items;
        list->room = room;
    }
    list->items[list->count++] = seg;
    return 0;
}

/* Keeps the order: the last added is the last, the most likely to be in cache still. */
static void list_take(segment_list *list, size_t index) {
    list->count--;
    memmove(list->items + index, list->items + index + 1,
            (list->count - index) * sizeof(segment *));
}

static long list_find(segment_list *list, void *address) {
    for (size_t i = 0; i < list->count; i++)
        if (list->items[i]->address == address) return (long)i;
    return -1;
}

static void segment_remove(segment *seg) {
    if (seg->borrowed) {  /* its pool's, and Python's mapping: only forgotten here */
        free(seg);
        return;
    }
    if (!seg->foreign) shm_unlink(seg->name);
    munmap(seg->address, seg->capacity);
    free(seg);
    S.removed++;
}

static segment *segment_make(size_t size) {
    size_t capacity = (size + PAGE - 1) / PAGE * PAGE;
    segment *seg = calloc(1, sizeof(segment));
    if (seg == NULL) return NULL;
    snprintf(seg->name, NAME_SIZE, "/%s%llu", S.prefix, S.serial++);
    int fd = shm_open(seg->name, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0) {
        free(seg);
        return NULL;
    }
    /* Reserve the pages now: on a full /dev/shm this fails here (and the C
       library serves the allocation) instead of a SIGBUS on first touch. */
    void *address = MAP_FAILED;
    if (ftruncate(fd, (off_t)capacity) == 0 && posix_fallocate(fd, 0, (off_t)capacity) == 0)
        address = mmap(NULL, capacity, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    close(fd);
    if (address == MAP_FAILED) {
        shm_unlink(seg->name);
        free(seg);
        return NULL;
    }
    seg->address = address;
    seg->capacity = capacity;
    seg->shared = 1;
    S.made++;
    return seg;
}

/* Keep at most S.keep bytes of free segments, dropping the largest first. */
static void spare_trim(void) {
    while (S.free_bytes > S.keep && S.spare.count) {
        size_t largest = 0;
        for (size_t i = 1; i < S.spare.count; i++)
            if (S.spare.items[i]->capacity > S.spare.items[largest]->capacity) largest = i;
        segment *seg = S.spare.items[largest];
        list_take(&S.spare, largest);
        S.free_bytes -= seg->capacity;
        segment_remove(seg);
    }
}

/* A segment no longer live nor lent: kept for reuse, or removed. */
static void segment_done(long index) {
    segment *seg = S.used.items[index];
    list_take(&S.used, (size_t)index);
    if (S.closed || S.forked || seg->foreign || list_add(&S.spare, seg) != 0) {
        segment_remove(seg);
        return;
    }
    S.free_bytes += seg->capacity;
    spare_trim();
}

/* A live segment of at least ``size`` bytes, or NULL (then the C library serves). */
static void *segment_alloc(size_t size, int zeroed) {
    pthread_mutex_lock(&S.lock);
    segment *seg = NULL;
    long best = -1;
    for (size_t i = 0; i < S.spare.count; i++) {  /* smallest, then last allocated */
        segment *candidate = S.spare.items[i];
        if (candidate->capacity < size || candidate->capacity > 2 * size + PAGE) continue;
        if (best < 0 || candidate->capacity < S.spare.items[best]->capacity ||
            (candidate->capacity == S.spare.items[best]->capacity &&
             candidate->given > S.spare.items[best]->given))
            best = (long)i;
    }
    if (best >= 0) {
        seg = S.spare.items[best];
        list_take(&S.spare, (size_t)best);
        S.free_bytes -= seg->capacity;
        S.reused++;
        if (zeroed) memset(seg->address, 0, size);
    } else {
        seg = segment_make(size);  /* a fresh segment is zero-filled */
    }
    if (seg != NULL && list_add(&S.used, seg) != 0) {
        segment_remove(seg);
        seg = NULL;
    }
    if (seg == NULL) {
        S.fallbacks++;
        pthread_mutex_unlock(&S.lock);
        return NULL;
    }
    seg->size = size;
    seg->given = ++S.allocations;
    seg->live = 1;
    seg->lent = 0;
    pthread_mutex_unlock(&S.lock);
    return seg->address;
}

static int large(size_t size) {
    return size >= S.threshold && !S.closed && !S.forked;
}

static void *handler_malloc(void *ctx, size_t size) {
    (void)ctx;
    if (large(size)) {
        void *address = segment_alloc(size, 0);
        if (address != NULL) return address;
    }
    return malloc(size ? size : 1);
}

static void *handler_calloc(void *ctx, size_t count, size_t each) {
    (void)ctx;
    if (each && count > SIZE_MAX / each) return NULL;
    size_t size = count * each;
    if (large(size) && size <= LAZY_ZEROS) {
        void *address = segment_alloc(size, 1);
        if (address != NULL) return address;
    }
    return calloc(count ? count : 1, each ? each : 1);
}

/* Whether ``address`` is a segment's; if so, ``*size`` is its size. */
static int owned(void *address, size_t *size) {
    if (S.used.count == 0) return 0;  /* none: ``address`` cannot be one */
    pthread_mutex_lock(&S.lock);
    long index = list_find(&S.used, address);
    if (index >= 0 && size != NULL) *size = S.used.items[index]->size;
    pthread_mutex_unlock(&S.lock);
    return index >= 0;
}

static void handler_free(void *ctx, void *address, size_t size) {
    (void)ctx;
    (void)size;
    if (address == NULL) return;
    if (S.used.count) {
        pthread_mutex_lock(&S.lock);
        long index = list_find(&S.used, address);
        if (index >= 0) {
            segment *seg = S.used.items[index];
            seg->live = 0;
            if (!seg->lent) segment_done(index);
            pthread_mutex_unlock(&S.lock);
            return;
        }
        pthread_mutex_unlock(&S.lock);
    }
    free(address);
}

static void *handler_realloc(void *ctx, void *address, size_t size) {
    if (address == NULL) return handler_malloc(ctx, size);
    size_t old = 0;
    if (owned(address, &old)) {  /* to a segment of the new size, or the C library */
        void *moved = handler_malloc(ctx, size);
        if (moved == NULL) return NULL;
        memcpy(moved, address, old < size ? old : size);
        handler_free(ctx, address, old);
        return moved;
    }
#ifdef __GLIBC__
    if (large(size)) {  /* an array growing past the threshold moves to a segment */
        size_t usable = malloc_usable_size(address);
        void *moved = segment_alloc(size, 0);
        if (moved != NULL) {
            memcpy(moved, address, usable < size ? usable : size);
            free(address);
            return moved;
        }
    }
#endif
    return realloc(address, size ? size : 1);
}

static PyDataMem_Handler handler = {
    "numap_shared_memory",
    1,
    {NULL, handler_malloc, handler_calloc, handler_realloc, handler_free},
};

static PyObject *capsule = NULL;

/* -- fork() ------------------------------------------------------------------------------ */

static void before_fork(void) {
    pthread_mutex_lock(&S.lock);  /* held across fork(): the child's lists are whole */
    for (size_t i = 0; i < S.used.count; i++) {
        segment *seg = S.used.items[i];
        seg->snapshot = NULL;
        if (!seg->shared) continue;  /* private already: inherited copy-on-write */
        if (seg->live) {
            void *copy = mmap(NULL, seg->capacity, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (copy == MAP_FAILED) continue;  /* inherited shared, as a last resort */
            memcpy(copy, seg->address, seg->size);
            seg->snapshot = copy;
        }
        madvise(seg->address, seg->capacity, MADV_DONTFORK);
    }
    for (size_t i = 0; i < S.spare.count; i++)
        madvise(S.spare.items[i]->address, S.spare.items[i]->capacity, MADV_DONTFORK);
}

static void after_fork_parent(void) {
    for (size_t i = 0; i < S.used.count; i++) {
        segment *seg = S.used.items[i];
        if (seg->shared && (seg->snapshot != NULL || !seg->live))
            madvise(seg->address, seg->capacity, MADV_DOFORK);
        if (seg->snapshot != NULL) munmap(seg->snapshot, seg->capacity);
        seg->snapshot = NULL;
    }
    for (size_t i = 0; i < S.spare.count; i++)
        madvise(S.spare.items[i]->address, S.spare.items[i]->capacity, MADV_DOFORK);
    pthread_mutex_unlock(&S.lock);
}

static void after_fork_child(void) {
    size_t kept = 0;
    for (size_t i = 0; i < S.used.count; i++) {
        segment *seg = S.used.items[i];
        seg->foreign = 1;  /* the names are the parent's, and so are its loans */
        seg->lent = 0;
        if (seg->shared && seg->snapshot != NULL) {
            /* the snapshot takes the segment's place: the arrays on it stay valid */
            if (mremap(seg->snapshot, seg->capacity, seg->capacity,
                       MREMAP_MAYMOVE | MREMAP_FIXED, seg->address) != MAP_FAILED) {
                seg->shared = 0;
                seg->borrowed = 0;  /* the child's own copy now: unmapped when freed */
            } else {  /* nothing is mapped there now (not inherited): a copy in place */
                void *at = mmap(seg->address, seg->capacity, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
                if (at != MAP_FAILED) {
                    memcpy(at, seg->snapshot, seg->size);
                    seg->shared = 0;
                    seg->borrowed = 0;
                }
                munmap(seg->snapshot, seg->capacity);
            }
            seg->snapshot = NULL;
        } else if (seg->shared && !seg->live) {
            free(seg);  /* lent only, or borrowed: not inherited, no array of ours on it */
            continue;
        }
        S.used.items[kept++] = seg;
    }
    S.used.count = kept;
    for (size_t i = 0; i < S.spare.count; i++) free(S.spare.items[i]);  /* not inherited */
    S.spare.count = 0;
    S.free_bytes = 0;
    S.forked = 1;
    pthread_mutex_unlock(&S.lock);
}

/* -- the Python side -------------------------------------------------------------------- */

static PyObject *alloc_install(PyObject *self, PyObject *args) {
    const char *prefix;
    Py_ssize_t threshold, keep;
    if (!PyArg_ParseTuple(args, "snn:install", &prefix, &threshold, &keep)) return NULL;
    if (prefix[0] == '\0' || strlen(prefix) >= sizeof(S.prefix) || strchr(prefix, '/')) {
        PyErr_Format(PyExc_ValueError,
                     "install: prefix must be 1 to %zu characters without '/', got %R",
                     sizeof(S.prefix) - 1, PyTuple_GET_ITEM(args, 0));
        return NULL;
    }
    if (threshold < 1) {
        PyErr_Format(PyExc_ValueError, "install: threshold must be at least 1 byte, got %zd",
                     threshold);
        return NULL;
    }
    if (keep < 0) {
        PyErr_Format(PyExc_ValueError, "install: keep must not be negative, got %zd", keep);
        return NULL;
    }
    if (capsule == NULL) {
        capsule = PyCapsule_New(&handler, "mem_handler", NULL);
        if (capsule == NULL) return NULL;
        pthread_atfork(before_fork, after_fork_parent, after_fork_child);
    }
    pthread_mutex_lock(&S.lock);
    memcpy(S.prefix, prefix, strlen(prefix) + 1);
    S.threshold = (size_t)threshold;
    S.keep = (size_t)keep;
    S.closed = 0;
    S.forked = 0;
    S.installed = 1;
    pthread_mutex_unlock(&S.lock);
    PyObject *old = PyDataMem_SetHandler(capsule);
    if (old == NULL) return NULL;
    Py_DECREF(old);
    Py_RETURN_NONE;
}

static PyObject *alloc_block(PyObject *self, PyObject *args) {
    unsigned long long address, nbytes;
    if (!PyArg_ParseTuple(args, "KK:block", &address, &nbytes)) return NULL;
    char name[NAME_SIZE] = "";
    size_t capacity = 0;
    pthread_mutex_lock(&S.lock);
    long index = list_find(&S.used, (void *)(uintptr_t)address);
    if (index >= 0) {
        segment *seg = S.used.items[index];
        if (seg->live && !seg->lent && !seg->foreign && seg->size == nbytes) {
            memcpy(name, seg->name, NAME_SIZE);
            capacity = seg->capacity;
        }
    }
    pthread_mutex_unlock(&S.lock);
    if (name[0] == '\0') Py_RETURN_NONE;
    return Py_BuildValue("(sK)", name, (unsigned long long)capacity);
}

static PyObject *set_lent(PyObject *args, const char *what, int lent) {
    unsigned long long address;
    if (!PyArg_ParseTuple(args, what, &address)) return NULL;
    int done = 0;
    pthread_mutex_lock(&S.lock);
    long index = list_find(&S.used, (void *)(uintptr_t)address);
    if (index >= 0 && !S.used.items[index]->foreign) {
        segment *seg = S.used.items[index];
        seg->lent = lent;
        done = 1;
        if (!lent && !seg->live) segment_done(index);
    }
    pthread_mutex_unlock(&S.lock);
    return PyBool_FromLong(done);
}

static PyObject *alloc_lend(PyObject *self, PyObject *args) {
    return set_lent(args, "K:lend", 1);
}

static PyObject *alloc_unlend(PyObject *self, PyObject *args) {
    return set_lent(args, "K:unlend", 0);
}

static PyObject *alloc_live(PyObject *self, PyObject *args) {
    unsigned long long address;
    if (!PyArg_ParseTuple(args, "K:live", &address)) return NULL;
    int live = 0;
    pthread_mutex_lock(&S.lock);
    long index = list_find(&S.used, (void *)(uintptr_t)address);
    if (index >= 0) live = S.used.items[index]->live;
    pthread_mutex_unlock(&S.lock);
    return PyBool_FromLong(live);
}

static PyObject *alloc_give_back(PyObject *self, PyObject *args) {
    const char *name;
    if (!PyArg_ParseTuple(args, "s:give_back", &name)) return NULL;
    int known = 0;
    pthread_mutex_lock(&S.lock);
    for (size_t i = 0; i < S.used.count; i++) {
        segment *seg = S.used.items[i];
        if (strcmp(seg->name, name) == 0 && seg->lent && !seg->foreign) {
            seg->lent = 0;
            known = 1;
            if (!seg->live) segment_done((long)i);
            break;
        }
    }
    pthread_mutex_unlock(&S.lock);
    return PyBool_FromLong(known);
}

static PyObject *alloc_borrow(PyObject *self, PyObject *args) {
    const char *name;
    unsigned long long address, capacity;
    if (!PyArg_ParseTuple(args, "sKK:borrow", &name, &address, &capacity)) return NULL;
    if (strlen(name) >= NAME_SIZE) {
        PyErr_Format(PyExc_ValueError, "borrow: name must be under %d characters, got %R",
                     NAME_SIZE, PyTuple_GET_ITEM(args, 0));
        return NULL;
    }
    segment *seg = calloc(1, sizeof(segment));
    if (seg == NULL) return PyErr_NoMemory();
    memcpy(seg->name, name, strlen(name) + 1);
    seg->address = (void *)(uintptr_t)address;
    seg->capacity = (size_t)capacity;
    seg->shared = 1;
    seg->borrowed = 1;
    int taken = 0;
    pthread_mutex_lock(&S.lock);
    if (S.installed && !S.closed && !S.forked && capacity >= S.threshold &&
        list_add(&S.spare, seg) == 0) {
        seg->given = ++S.allocations;  /* the first choice: its lines were just read */
        S.free_bytes += seg->capacity;
        taken = 1;
    }
    pthread_mutex_unlock(&S.lock);
    if (!taken) free(seg);
    return PyBool_FromLong(taken);
}

static PyObject *alloc_borrowed(PyObject *self, PyObject *unused) {
    /* Forget every borrowed segment no array of ours is on (free, or lent: the
       message took it back to its pool); the names of those still live. */
    size_t count = 0, room = 0;
    int short_of_memory = 0;
    char (*held)[NAME_SIZE] = NULL;
    pthread_mutex_lock(&S.lock);
    for (size_t i = S.spare.count; i-- > 0;) {
        segment *seg = S.spare.items[i];
        if (!seg->borrowed) continue;
        list_take(&S.spare, i);
        S.free_bytes -= seg->capacity;
        segment_remove(seg);
    }
    for (size_t i = S.used.count; i-- > 0;) {
        segment *seg = S.used.items[i];
        if (!seg->borrowed) continue;
        if (!seg->live) {
            list_take(&S.used, i);
            segment_remove(seg);
            continue;
        }
        if (count == room) {
            room = room ? 2 * room : 8;
            void *more = realloc(held, room * NAME_SIZE);
            if (more == NULL) {  /* a live one left unnamed would go back under its array */
                short_of_memory = 1;
                break;
            }
            held = more;
        }
        memcpy(held[count++], seg->name, NAME_SIZE);
    }
    pthread_mutex_unlock(&S.lock);
    if (short_of_memory) {
        free(held);
        return PyErr_NoMemory();
    }
    PyObject *names = PyList_New(0);
    for (size_t i = 0; names != NULL && i < count; i++) {
        PyObject *name = PyUnicode_FromString(held[i]);
        if (name == NULL || PyList_Append(names, name) != 0) Py_CLEAR(names);
        Py_XDECREF(name);
    }
    free(held);
    return names;
}

static PyObject *alloc_close(PyObject *self, PyObject *unused) {
    pthread_mutex_lock(&S.lock);
    S.closed = 1;
    while (S.spare.count) {
        segment *seg = S.spare.items[--S.spare.count];
        segment_remove(seg);
    }
    S.free_bytes = 0;
    /* Names go now. A segment lent only goes (its receiver has a mapping of its
       own); one an array is on keeps its mapping until numpy frees it. */
    size_t kept = 0;
    for (size_t i = 0; i < S.used.count; i++) {
        segment *seg = S.used.items[i];
        if (!seg->foreign && !seg->borrowed) shm_unlink(seg->name);
        seg->foreign = 1;
        seg->lent = 0;
        if (!seg->live) {
            segment_remove(seg);
            continue;
        }
        S.used.items[kept++] = seg;
    }
    S.used.count = kept;
    pthread_mutex_unlock(&S.lock);
    Py_RETURN_NONE;
}

static PyObject *alloc_stats(PyObject *self, PyObject *unused) {
    pthread_mutex_lock(&S.lock);
    Py_ssize_t used = (Py_ssize_t)S.used.count, spare = (Py_ssize_t)S.spare.count;
    unsigned long long spare_bytes = S.free_bytes, made = S.made, reused = S.reused,
                       removed = S.removed, fallbacks = S.fallbacks;
    int active = S.installed && !S.closed && !S.forked;
    pthread_mutex_unlock(&S.lock);
    return Py_BuildValue("{s:n,s:n,s:K,s:K,s:K,s:K,s:K,s:i}", "used", used, "spare", spare,
                         "spare_bytes", spare_bytes, "made", made, "reused", reused,
                         "removed", removed, "fallbacks", fallbacks, "active", active);
}

static PyMethodDef methods[] = {
    {"install", alloc_install, METH_VARARGS, "Allocate large arrays in shared memory here."},
    {"block", alloc_block, METH_VARARGS, "(name, capacity) of a whole live segment, or None."},
    {"lend", alloc_lend, METH_VARARGS, "A message names the segment at this address."},
    {"unlend", alloc_unlend, METH_VARARGS, "The message does not name it after all."},
    {"live", alloc_live, METH_VARARGS, "Whether an array of this process owns the segment."},
    {"give_back", alloc_give_back, METH_VARARGS, "The receiver dropped the named segment."},
    {"borrow", alloc_borrow, METH_VARARGS, "A received segment to make arrays in, for now."},
    {"borrowed", alloc_borrowed, METH_NOARGS, "Forget borrowed segments; those still live."},
    {"close", alloc_close, METH_NOARGS, "Remove every segment; allocate from the C library."},
    {"stats", alloc_stats, METH_NOARGS, "Counts of segments, for the tests."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "numap._alloc",
    "A numpy memory handler that places large arrays in shared-memory segments.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__alloc(void) {
    import_array();
    return PyModule_Create(&module);
}
