/*
 * papyflow.datalogger._files: write a batch of small files, each unnamed until
 * whole, without holding the GIL.
 *
 * A saver's writer threads would otherwise release and take the GIL again for
 * every system call of every file (make, write, link, close): with several
 * threads in one saver process, each of those hand-overs wakes another thread,
 * and a saver of five threads wrote about half the files a saver of one did.
 * Here a whole batch is written with the GIL released once, so the threads of
 * a saver write in parallel.
 *
 * Each file is made in the directory open as ``folder`` with O_TMPFILE (it has
 * no name), written, then linked to its name through /proc/self/fd (a name
 * that exists is never replaced: EEXIST). What fails is returned, not raised:
 * the Python side (papyflow/datalogger/_saver.py) decides what each failure
 * means (a file system without unnamed files, a duplicate, a full disk).
 *
 * Python side:
 *   write_unnamed(folder, items) -> [(index, errno, step), ...]
 *       items: a list of (name: bytes, header: bytes-like, payload: bytes-like);
 *       step: 0 making the file, 1 writing it, 2 linking it to its name.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define STEP_MAKE 0
#define STEP_WRITE 1
#define STEP_LINK 2

typedef struct {
    const char *name;
    Py_buffer header;
    Py_buffer payload;
    int error;
    int step;
} item_t;

/* Write both pieces, whatever the kernel takes at a time; 0 or an errno. */
static int write_whole(int fd, item_t *item) {
    struct iovec pieces[2] = {
        {item->header.buf, (size_t)item->header.len},
        {item->payload.buf, (size_t)item->payload.len},
    };
    struct iovec *next = pieces;
    int left = 2;
    while (left > 0) {
        if (next->iov_len == 0) {
            next++;
            left--;
            continue;
        }
        ssize_t written = writev(fd, next, left);
        if (written < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        while (left > 0 && (size_t)written >= next->iov_len) {
            written -= (ssize_t)next->iov_len;
            next++;
            left--;
        }
        if (left > 0) {
            next->iov_base = (char *)next->iov_base + written;
            next->iov_len -= (size_t)written;
        }
    }
    return 0;
}

static void write_one(int folder, item_t *item) {
#ifdef O_TMPFILE
    int fd;
    do {
        fd = openat(folder, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        item->error = errno;
        item->step = STEP_MAKE;
        return;
    }
    int error = write_whole(fd, item);
    if (error != 0) {
        item->error = error;
        item->step = STEP_WRITE;
        close(fd);
        return;
    }
    char path[40];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int linked;
    do {
        linked = linkat(AT_FDCWD, path, folder, item->name, AT_SYMLINK_FOLLOW);
    } while (linked < 0 && errno == EINTR);
    if (linked < 0) {
        item->error = errno;
        item->step = STEP_LINK;
    }
    close(fd);  /* an unnamed file not linked goes with its last descriptor */
#else
    item->error = EOPNOTSUPP;
    item->step = STEP_MAKE;
#endif
}

static void release(item_t *items, Py_ssize_t count) {
    for (Py_ssize_t i = 0; i < count; i++) {
        if (items[i].header.obj != NULL)
            PyBuffer_Release(&items[i].header);
        if (items[i].payload.obj != NULL)
            PyBuffer_Release(&items[i].payload);
    }
    PyMem_Free(items);
}

static PyObject *write_unnamed(PyObject *module, PyObject *args) {
    int folder;
    PyObject *given;
    if (!PyArg_ParseTuple(args, "iO:write_unnamed", &folder, &given))
        return NULL;
    /* A tuple of its own: nothing can change it while the GIL is released. */
    PyObject *list = PySequence_Tuple(given);
    if (list == NULL)
        return NULL;
    Py_ssize_t count = PyTuple_GET_SIZE(list);
    item_t *items = PyMem_Calloc(count > 0 ? (size_t)count : 1, sizeof(item_t));
    if (items == NULL) {
        Py_DECREF(list);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *entry = PyTuple_GET_ITEM(list, i);
        PyObject *name;
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 3 ||
                !PyBytes_Check(name = PyTuple_GET_ITEM(entry, 0))) {
            PyErr_Format(PyExc_TypeError,
                         "items[%zd] must be a tuple (name: bytes, header, payload)", i);
            goto failed;
        }
        if ((Py_ssize_t)strlen(PyBytes_AS_STRING(name)) != PyBytes_GET_SIZE(name)) {
            PyErr_Format(PyExc_ValueError, "items[%zd]: the name has a NUL byte", i);
            goto failed;
        }
        items[i].name = PyBytes_AS_STRING(name);  /* the tuple keeps it alive */
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(entry, 1), &items[i].header, PyBUF_SIMPLE) < 0)
            goto failed;
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(entry, 2), &items[i].payload, PyBUF_SIMPLE) < 0)
            goto failed;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++)
        write_one(folder, &items[i]);
    Py_END_ALLOW_THREADS
    PyObject *failures = PyList_New(0);
    for (Py_ssize_t i = 0; failures != NULL && i < count; i++) {
        if (items[i].error == 0)
            continue;
        PyObject *failure = Py_BuildValue("(nii)", i, items[i].error, items[i].step);
        if (failure == NULL || PyList_Append(failures, failure) < 0)
            Py_CLEAR(failures);
        Py_XDECREF(failure);
    }
    release(items, count);
    Py_DECREF(list);
    return failures;

failed:
    release(items, count);
    Py_DECREF(list);
    return NULL;
}

static PyMethodDef methods[] = {
    {"write_unnamed", write_unnamed, METH_VARARGS,
     "write_unnamed(folder, items) -> [(index, errno, step), ...]\n\n"
     "Write each (name, header, payload) of items as a file made unnamed in the directory\n"
     "open as folder, then linked to its name (never replacing one), with the GIL\n"
     "released; the failures (step 0 making, 1 writing, 2 linking)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "papyflow.datalogger._files",
    "A batch of small files, each unnamed until whole, written without the GIL.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__files(void) {
    return PyModule_Create(&module);
}
