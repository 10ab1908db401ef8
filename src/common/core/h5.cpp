#include "common/core/h5.h"

#include <cerrno>
#include <cstring>

#include "common/core/check.h"
#include "common/core/strings.h"

namespace rlhf {

void h5_quiet() {
  static bool done = false;
  if (!done) {
    // No library teardown at exit: every file we write is closed explicitly (close() reports
    // failures), and HDF5's atexit handler re-closes a file whose close failed (a full disk) and
    // crashes doing so (H5F__close_cb, exit 139). Must precede every other HDF5 call.
    H5dont_atexit();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    done = true;
  }
}

H5File H5File::create(const std::string& path) {
  h5_quiet();
  hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  RLHF_CHECK(id >= 0, "cannot create HDF5 file '{}' (does the directory exist and is it writable?)", path);
  return H5File(id, path);
}

H5File H5File::open_read(const std::string& path) {
  h5_quiet();
  FILE* f = std::fopen(path.c_str(), "rb");
  RLHF_CHECK(f != nullptr, "cannot open '{}': file not found or unreadable", path);
  std::fclose(f);
  RLHF_CHECK(H5Fis_hdf5(path.c_str()) > 0,
             "'{}' is not an HDF5 file (truncated, or written by something else?)", path);
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  RLHF_CHECK(id >= 0, "cannot open HDF5 file '{}' (truncated or corrupt?)", path);
  return H5File(id, path);
}

H5File::H5File(H5File&& o) noexcept : id_(o.id_), path_(std::move(o.path_)) { o.id_ = -1; }
H5File& H5File::operator=(H5File&& o) noexcept {
  if (this != &o) {
    if (id_ >= 0) H5Fclose(id_);  // errors surface only through close()
    id_ = o.id_;
    path_ = std::move(o.path_);
    o.id_ = -1;
  }
  return *this;
}
H5File::~H5File() {
  if (id_ >= 0) H5Fclose(id_);  // unwinding after an error: nothing more to report
}

void H5File::close() {
  if (id_ < 0) return;
  const hid_t id = id_;
  id_ = -1;
  unsigned intent = 0;
  const bool writable = H5Fget_intent(id, &intent) >= 0 && (intent & H5F_ACC_RDWR);
  errno = 0;
  const herr_t flushed = writable ? H5Fflush(id, H5F_SCOPE_LOCAL) : 0;
  const int err = errno;
  const herr_t closed = H5Fclose(id);
  RLHF_CHECK(flushed >= 0 && closed >= 0, "cannot write HDF5 file '{}': {} failed: {}", path_,
             flushed < 0 ? "flushing it" : "closing it",
             err != 0 ? std::strerror(err) : "unknown HDF5 error (disk full?)");
}

bool H5File::has(const std::string& name) const {
  // Walk each path component: H5Lexists fails on a missing intermediate group.
  size_t pos = 0;
  while (true) {
    size_t next = name.find('/', pos);
    std::string prefix = name.substr(0, next);
    if (H5Lexists(id_, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (next == std::string::npos) return true;
    pos = next + 1;
  }
}

static herr_t collect_cb(hid_t, const char* name, const H5O_info_t* info, void* data) {
  if (info->type == H5O_TYPE_DATASET) static_cast<std::vector<std::string>*>(data)->push_back(name);
  return 0;
}

std::vector<std::string> H5File::datasets() const {
  std::vector<std::string> out;
#if H5_VERSION_GE(1, 12, 0)
  H5_CHECK(H5Ovisit(id_, H5_INDEX_NAME, H5_ITER_INC, collect_cb, &out, H5O_INFO_BASIC),
           "listing datasets");
#else
  H5_CHECK(H5Ovisit(id_, H5_INDEX_NAME, H5_ITER_INC, collect_cb, &out), "listing datasets");
#endif
  std::sort(out.begin(), out.end());
  return out;
}

static hid_t h5_type_for(torch::ScalarType st) {
  switch (st) {
    case torch::kFloat: return H5T_NATIVE_FLOAT;
    case torch::kDouble: return H5T_NATIVE_DOUBLE;
    case torch::kInt: return H5T_NATIVE_INT32;
    case torch::kLong: return H5T_NATIVE_INT64;
    case torch::kByte: return H5T_NATIVE_UINT8;
    case torch::kBool: return H5T_NATIVE_UINT8;
    case torch::kBFloat16: return H5T_NATIVE_UINT16;
    default: return -1;
  }
}

static void ensure_groups(hid_t file, const std::string& name) {
  size_t pos = 0;
  while ((pos = name.find('/', pos)) != std::string::npos) {
    std::string g = name.substr(0, pos);
    if (!g.empty() && H5Lexists(file, g.c_str(), H5P_DEFAULT) <= 0) {
      hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
      H5Pset_obj_track_times(gcpl, 0);  // no timestamps: same content -> same bytes
      hid_t gid = H5Gcreate2(file, g.c_str(), H5P_DEFAULT, gcpl, H5P_DEFAULT);
      H5Pclose(gcpl);
      RLHF_CHECK(gid >= 0, "HDF5: cannot create group '{}'", g);
      H5Gclose(gid);
    }
    ++pos;
  }
}

void H5File::write_tensor(const std::string& name, const torch::Tensor& t_in) {
  torch::Tensor t = t_in.detach().to(torch::kCPU).contiguous();
  hid_t type = h5_type_for(t.scalar_type());
  RLHF_CHECK(type >= 0, "{}: cannot store tensor '{}' of dtype {}", path_, name,
             c10::toString(t.scalar_type()));
  ensure_groups(id_, name);
  std::vector<hsize_t> dims(t.sizes().begin(), t.sizes().end());
  hid_t space = dims.empty() ? H5Screate(H5S_SCALAR)
                             : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_obj_track_times(dcpl, 0);  // no timestamps: same content -> same bytes
  hid_t ds = H5Dcreate2(id_, name.c_str(), type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  H5Pclose(dcpl);
  H5Sclose(space);
  RLHF_CHECK(ds >= 0, "{}: cannot create dataset '{}'", path_, name);
  errno = 0;
  herr_t st = t.numel() ? H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()) : 0;
  const int err = errno;
  H5Dclose(ds);
  RLHF_CHECK(st >= 0, "{}: cannot write dataset '{}': {}", path_, name,
             err != 0 ? std::strerror(err) : "unknown HDF5 error (disk full?)");
  if (t.scalar_type() == torch::kBFloat16) set_attr("dtype", std::string("bfloat16"), name);
  if (t.scalar_type() == torch::kBool) set_attr("dtype", std::string("bool"), name);
}

std::vector<int64_t> H5File::shape(const std::string& name) const {
  RLHF_CHECK(has(name), "{}: dataset '{}' not found", path_, name);
  hid_t ds = H5Dopen2(id_, name.c_str(), H5P_DEFAULT);
  RLHF_CHECK(ds >= 0, "{}: cannot open dataset '{}'", path_, name);
  hid_t space = H5Dget_space(ds);
  int nd = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> dims(std::max(nd, 0));
  if (nd > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  H5Sclose(space);
  H5Dclose(ds);
  RLHF_CHECK(nd >= 0, "{}: dataset '{}' has an unreadable shape", path_, name);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

// Before allocating for a dataset: its element count times the element size must fit in 64 bits
// and in what the file can hold — the file's size when stored unfiltered, 1100x the dataset's
// stored bytes when compressed (deflate's ratio is bounded near 1032:1) — so a corrupt or hostile
// shape is an error naming the dataset, not an allocation of terabytes.
void H5File::check_fits_file(hid_t ds, const std::string& name, const std::vector<int64_t>& dims,
                             int64_t esize) const {
  int64_t bytes = esize;
  for (int64_t d : dims)
    if (d < 0 || __builtin_mul_overflow(bytes, d, &bytes))
      throw Error(fmt::format("{}: dataset '{}' has shape {} whose byte count does not fit in 64 "
                              "bits (corrupt file?)", path_, name, shape_str(dims)));
  hsize_t file_size = 0;
  H5Fget_filesize(id_, &file_size);
  hid_t dcpl = H5Dget_create_plist(ds);
  const int nfilters = dcpl >= 0 ? H5Pget_nfilters(dcpl) : 0;
  if (dcpl >= 0) H5Pclose(dcpl);
  const uint64_t limit = nfilters > 0 ? uint64_t(H5Dget_storage_size(ds)) * 1100 : file_size;
  if (static_cast<uint64_t>(bytes) > limit)
    throw Error(fmt::format("{}: dataset '{}' has shape {} ({} bytes) but the file holds {} bytes "
                            "{}(truncated or corrupt file?)", path_, name, shape_str(dims), bytes,
                            nfilters > 0 ? H5Dget_storage_size(ds) : file_size,
                            nfilters > 0 ? "of its compressed data " : ""));
}

torch::Tensor H5File::read_tensor(const std::string& name) const {
  auto dims = shape(name);
  hid_t ds = H5Dopen2(id_, name.c_str(), H5P_DEFAULT);
  hid_t ftype = H5Dget_type(ds);
  H5T_class_t cls = H5Tget_class(ftype);
  size_t size = H5Tget_size(ftype);
  H5T_sign_t sign = cls == H5T_INTEGER ? H5Tget_sign(ftype) : H5T_SGN_NONE;
  H5Tclose(ftype);
  torch::ScalarType st;
  if (cls == H5T_FLOAT && size == 4) st = torch::kFloat;
  else if (cls == H5T_FLOAT && size == 8) st = torch::kDouble;
  else if (cls == H5T_INTEGER && size == 4 && sign == H5T_SGN_2) st = torch::kInt;
  else if (cls == H5T_INTEGER && size == 8 && sign == H5T_SGN_2) st = torch::kLong;
  else if (cls == H5T_INTEGER && size == 1 && sign == H5T_SGN_NONE) st = torch::kByte;
  else if (cls == H5T_INTEGER && size == 2 && sign == H5T_SGN_NONE) st = torch::kBFloat16;
  else {
    H5Dclose(ds);
    throw Error(fmt::format("{}: dataset '{}' has an unsupported element type (class {}, {} bytes)",
                            path_, name, static_cast<int>(cls), size));
  }
  if (st == torch::kByte && has_attr("dtype", name) && attr_string("dtype", name) == "bool")
    st = torch::kBool;
  try {
    check_fits_file(ds, name, dims, static_cast<int64_t>(c10::elementSize(st)));
  } catch (...) {
    H5Dclose(ds);
    throw;
  }
  torch::Tensor t = torch::empty(dims, torch::dtype(st));
  herr_t r = t.numel() ? H5Dread(ds, h5_type_for(st), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()) : 0;
  H5Dclose(ds);
  RLHF_CHECK(r >= 0, "{}: cannot read dataset '{}' (file truncated or corrupt?)", path_, name);
  return t;
}

template <class T> static torch::ScalarType scalar_of();
template <> torch::ScalarType scalar_of<int32_t>() { return torch::kInt; }
template <> torch::ScalarType scalar_of<int64_t>() { return torch::kLong; }
template <> torch::ScalarType scalar_of<float>() { return torch::kFloat; }
template <> torch::ScalarType scalar_of<double>() { return torch::kDouble; }
template <> torch::ScalarType scalar_of<uint8_t>() { return torch::kByte; }

template <class T>
void H5File::write_vector(const std::string& name, const std::vector<T>& v) {
  auto t = torch::from_blob(const_cast<T*>(v.data()), {static_cast<int64_t>(v.size())},
                            torch::dtype(scalar_of<T>()));
  write_tensor(name, t);
}

template <class T>
std::vector<T> H5File::read_vector(const std::string& name) const {
  torch::Tensor t = read_tensor(name);
  RLHF_CHECK(t.dim() == 1, "{}: dataset '{}' should be 1-D, has shape {}", path_, name, t.dim());
  RLHF_CHECK(t.scalar_type() == scalar_of<T>(), "{}: dataset '{}' has dtype {}, expected {}",
             path_, name, c10::toString(t.scalar_type()), c10::toString(scalar_of<T>()));
  return std::vector<T>(t.data_ptr<T>(), t.data_ptr<T>() + t.numel());
}

template void H5File::write_vector(const std::string&, const std::vector<int32_t>&);
template void H5File::write_vector(const std::string&, const std::vector<int64_t>&);
template void H5File::write_vector(const std::string&, const std::vector<float>&);
template void H5File::write_vector(const std::string&, const std::vector<double>&);
template void H5File::write_vector(const std::string&, const std::vector<uint8_t>&);
template std::vector<int32_t> H5File::read_vector(const std::string&) const;
template std::vector<int64_t> H5File::read_vector(const std::string&) const;
template std::vector<float> H5File::read_vector(const std::string&) const;
template std::vector<double> H5File::read_vector(const std::string&) const;
template std::vector<uint8_t> H5File::read_vector(const std::string&) const;

// ---- attributes -------------------------------------------------------------------
namespace {
struct Obj {
  hid_t id;
  bool is_file;
  ~Obj() {
    if (!is_file && id >= 0) H5Oclose(id);
  }
};
Obj open_obj(hid_t file, const std::string& on, const std::string& path) {
  if (on.empty()) return {file, true};
  hid_t o = H5Oopen(file, on.c_str(), H5P_DEFAULT);
  RLHF_CHECK(o >= 0, "{}: object '{}' not found", path, on);
  return {o, false};
}
void write_attr_raw(hid_t obj, const std::string& key, hid_t type, const void* data,
                    const std::string& path) {
  if (H5Aexists(obj, key.c_str()) > 0) H5Adelete(obj, key.c_str());
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, key.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Sclose(space);
  RLHF_CHECK(a >= 0, "{}: cannot create attribute '{}'", path, key);
  herr_t st = H5Awrite(a, type, data);
  H5Aclose(a);
  RLHF_CHECK(st >= 0, "{}: cannot write attribute '{}'", path, key);
}
}  // namespace

void H5File::set_attr(const std::string& key, const std::string& value, const std::string& on) {
  Obj o = open_obj(id_, on, path_);
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, std::max<size_t>(value.size(), 1));
  H5Tset_strpad(type, H5T_STR_NULLPAD);
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  write_attr_raw(o.id, key, type, padded.data(), path_);
  H5Tclose(type);
}
void H5File::set_attr(const std::string& key, int64_t value, const std::string& on) {
  Obj o = open_obj(id_, on, path_);
  write_attr_raw(o.id, key, H5T_NATIVE_INT64, &value, path_);
}
void H5File::set_attr(const std::string& key, double value, const std::string& on) {
  Obj o = open_obj(id_, on, path_);
  write_attr_raw(o.id, key, H5T_NATIVE_DOUBLE, &value, path_);
}
bool H5File::has_attr(const std::string& key, const std::string& on) const {
  if (!on.empty() && !has(on)) return false;
  Obj o = open_obj(id_, on, path_);
  return H5Aexists(o.id, key.c_str()) > 0;
}

static hid_t open_attr(hid_t obj, const std::string& key, const std::string& path) {
  RLHF_CHECK(H5Aexists(obj, key.c_str()) > 0, "{}: attribute '{}' missing (not a file of this format?)",
             path, key);
  hid_t a = H5Aopen(obj, key.c_str(), H5P_DEFAULT);
  RLHF_CHECK(a >= 0, "{}: cannot open attribute '{}'", path, key);
  return a;
}

std::string H5File::attr_string(const std::string& key, const std::string& on) const {
  Obj o = open_obj(id_, on, path_);
  hid_t a = open_attr(o.id, key, path_);
  hid_t type = H5Aget_type(a);
  if (H5Tget_class(type) != H5T_STRING) {  // close both first: a handle left open keeps the file open
    H5Tclose(type);
    H5Aclose(a);
    throw Error(fmt::format("{}: attribute '{}' is not a string", path_, key));
  }
  std::string out;
  if (H5Tis_variable_str(type) > 0) {
    char* buf = nullptr;
    hid_t mem = H5Tcopy(H5T_C_S1);
    H5Tset_size(mem, H5T_VARIABLE);
    H5Aread(a, mem, &buf);
    if (buf) out = buf;
    H5free_memory(buf);
    H5Tclose(mem);
  } else {
    size_t n = H5Tget_size(type);
    std::string buf(n, '\0');
    H5Aread(a, type, buf.data());
    out = buf.substr(0, strnlen(buf.data(), n));
  }
  H5Tclose(type);
  H5Aclose(a);
  return out;
}
int64_t H5File::attr_int(const std::string& key, const std::string& on) const {
  Obj o = open_obj(id_, on, path_);
  hid_t a = open_attr(o.id, key, path_);
  int64_t v = 0;
  herr_t st = H5Aread(a, H5T_NATIVE_INT64, &v);
  H5Aclose(a);
  RLHF_CHECK(st >= 0, "{}: attribute '{}' is not an integer", path_, key);
  return v;
}
double H5File::attr_double(const std::string& key, const std::string& on) const {
  Obj o = open_obj(id_, on, path_);
  hid_t a = open_attr(o.id, key, path_);
  double v = 0;
  herr_t st = H5Aread(a, H5T_NATIVE_DOUBLE, &v);
  H5Aclose(a);
  RLHF_CHECK(st >= 0, "{}: attribute '{}' is not a number", path_, key);
  return v;
}

}  // namespace rlhf
