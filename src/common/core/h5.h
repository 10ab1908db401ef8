// h5.h — a small RAII layer over the HDF5 C API for tensors, vectors and attributes.
// Contract: any rank may read; only rank 0 writes (callers ensure it). Every failure throws
// rlhf::Error naming the file and the dataset/attribute. Dataset names may contain '/' (groups
// are created on write) and '.' (parameter names are stored flat).
#pragma once
#include <hdf5.h>

#include <string>
#include <vector>

#include <torch/torch.h>

namespace rlhf {

class H5File {
 public:
  static H5File create(const std::string& path);     // truncates
  static H5File open_read(const std::string& path);  // clear error for missing/foreign/truncated
  H5File(H5File&& o) noexcept;
  H5File& operator=(H5File&& o) noexcept;
  H5File(const H5File&) = delete;
  ~H5File();  // closes quietly (an error path); writers call close() to learn of failures
  // Flushes (when writable) and closes; throws rlhf::Error naming the file and the cause (e.g.
  // "No space left on device") when either fails. Idempotent.
  void close();

  const std::string& path() const { return path_; }
  bool has(const std::string& name) const;
  std::vector<std::string> datasets() const;  // full names, recursive, sorted

  // Tensors: float32/float64/bfloat16(stored as uint16 + attr)/int32/int64/uint8/bool.
  void write_tensor(const std::string& name, const torch::Tensor& t);
  torch::Tensor read_tensor(const std::string& name) const;
  std::vector<int64_t> shape(const std::string& name) const;

  template <class T> void write_vector(const std::string& name, const std::vector<T>& v);
  template <class T> std::vector<T> read_vector(const std::string& name) const;

  // Attributes on the root group (or on a dataset when `on` is non-empty).
  void set_attr(const std::string& key, const std::string& value, const std::string& on = "");
  void set_attr(const std::string& key, int64_t value, const std::string& on = "");
  void set_attr(const std::string& key, double value, const std::string& on = "");
  bool has_attr(const std::string& key, const std::string& on = "") const;
  std::string attr_string(const std::string& key, const std::string& on = "") const;
  int64_t attr_int(const std::string& key, const std::string& on = "") const;
  double attr_double(const std::string& key, const std::string& on = "") const;

 private:
  void check_fits_file(hid_t ds, const std::string& name, const std::vector<int64_t>& dims,
                       int64_t esize) const;
  H5File(hid_t id, std::string path) : id_(id), path_(std::move(path)) {}
  hid_t id_ = -1;
  std::string path_;
};

// Silence HDF5's own error-stack printing; our checks give the message. Idempotent.
void h5_quiet();

}  // namespace rlhf
