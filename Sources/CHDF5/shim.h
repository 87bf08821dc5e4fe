#ifndef DML_CHDF5_SHIM_H
#define DML_CHDF5_SHIM_H
// HDF5's C library, serial build (Debian's libhdf5-dev: pkg-config hdf5-serial; see docs/ARCHITECTURE.md for why
// not the parallel one). Its property-list, dataspace and type handles are macros over globals that the library
// fills in when it opens (H5OPEN), and its API names are macros mapped to numbered versions; Swift imports neither.
// Each accessor below is one of them as an inline function.
#include <hdf5.h>
#include <string.h>

static inline hid_t chdf5_p_default(void) { return H5P_DEFAULT; }
static inline hid_t chdf5_s_all(void) { return H5S_ALL; }
static inline unsigned chdf5_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned chdf5_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline hid_t chdf5_p_dataset_create(void) { return H5P_DATASET_CREATE; }
static inline hid_t chdf5_p_file_access(void) { return H5P_FILE_ACCESS; }
static inline hid_t chdf5_p_link_create(void) { return H5P_LINK_CREATE; }
static inline hid_t chdf5_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t chdf5_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t chdf5_native_int8(void) { return H5T_NATIVE_INT8; }
static inline hid_t chdf5_native_int32(void) { return H5T_NATIVE_INT32; }
static inline hid_t chdf5_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t chdf5_native_uint8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t chdf5_c_s1(void) { return H5T_C_S1; }
static inline hid_t chdf5_ieee_f64be(void) { return H5T_IEEE_F64BE; }
static inline hid_t chdf5_std_i16be(void) { return H5T_STD_I16BE; }

/// Stops the library printing its error stack to stderr. Per thread in a thread-safe build (Debian's is), so
/// it is called before every use on the calling thread; DML reports errors itself, once, naming the file.
static inline void chdf5_silence(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static herr_t chdf5_innermost_(unsigned n, const H5E_error2_t *e, void *out) {
    if (n == 0 && e->desc && e->desc[0]) { strncpy((char *)out, e->desc, 255); ((char *)out)[255] = 0; }
    return 0;
}

/// The innermost description on this thread's error stack (the most specific: "required filter 'lzf' is
/// not registered", "file signature not found"), into `out` (256 bytes); "" when the stack is empty.
static inline void chdf5_last_error(char *out) {
    out[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, chdf5_innermost_, out);   // upward: entry 0 is the innermost
}

typedef struct { char *out; size_t capacity; size_t used; int count; } chdf5_names_;

static herr_t chdf5_visit_(hid_t group, const char *name, const H5L_info_t *info, void *data) {
    chdf5_names_ *names = (chdf5_names_ *)data;
    if (info->type != H5L_TYPE_HARD) return 0;
    hid_t d = H5Dopen2(group, name, H5P_DEFAULT);
    if (d < 0) { H5Eclear2(H5E_DEFAULT); return 0; }
    H5Dclose(d);
    size_t len = strlen(name);
    if (names->used + len + 4 >= names->capacity) return 1;   // full: stop
    if (names->count > 0) { memcpy(names->out + names->used, ", ", 2); names->used += 2; }
    names->out[names->used++] = '/';
    memcpy(names->out + names->used, name, len);
    names->used += len;
    names->out[names->used] = 0;
    names->count += 1;
    return 0;
}

/// The datasets in the file (every group's, recursively), as "/a, /g/b", into `out` (at most `capacity` bytes,
/// the list cut short when it does not fit); returns how many were written. For error messages only.
static inline int chdf5_list_datasets(hid_t file, char *out, size_t capacity) {
    chdf5_names_ names = { out, capacity, 0, 0 };
    out[0] = 0;
    H5Lvisit(file, H5_INDEX_NAME, H5_ITER_INC, chdf5_visit_, &names);
    H5Eclear2(H5E_DEFAULT);
    return names.count;
}

#endif
