#include "../kernels/augment.h"

#include <string>

#include "array.h"
#include "bind.h"

namespace pya {

namespace {

// Range checks need the values, so they run only on host arrays; for GPU arrays the Python layer
// (pyalexnet.data.augment) checks the parameters on the host before uploading them.
void check_parameters_on_host(const Array& index, const Array& offsets, const Array& flips, int64_t num_images,
                              int64_t height, int64_t width, int64_t crop) {
  const int64_t n = index.dim(0);
  const int64_t* idx = index.data<int64_t>();
  const int32_t* off = offsets.data<int32_t>();
  const uint8_t* fl = flips.data<uint8_t>();
  for (int64_t i = 0; i < n; ++i) {
    if (idx[i] < 0 || idx[i] >= num_images)
      throw py::value_error("argument 'index': entry " + std::to_string(i) + " is " + std::to_string(idx[i]) +
                            ", outside [0, " + std::to_string(num_images) + ")");
    const int64_t top = off[2 * i], left = off[2 * i + 1];
    if (top < 0 || left < 0 || top + crop > height || left + crop > width)
      throw py::value_error("argument 'offsets': crop " + std::to_string(i) + " at (" + std::to_string(top) + ", " +
                            std::to_string(left) + ") of size " + std::to_string(crop) + " leaves the " +
                            std::to_string(height) + "x" + std::to_string(width) + " image");
    if (fl[i] > 1)
      throw py::value_error("argument 'flips': entry " + std::to_string(i) + " must be 0 or 1, got " +
                            std::to_string(int(fl[i])));
  }
}

}  // namespace

void bind_data(py::module_& m) {
  m.def("augment", [](py::handle images_, py::handle mean_, py::handle index_, py::handle offsets_, py::handle flips_,
                      py::handle lighting_, py::handle out_, std::uintptr_t stream) {
    Array images = array_arg(images_, "images"), mean = array_arg(mean_, "mean_image"), index = array_arg(index_, "index"),
          offsets = array_arg(offsets_, "offsets"), flips = array_arg(flips_, "flips"),
          lighting = array_arg(lighting_, "lighting"), out = array_arg(out_, "out", true);
    expect_dtype(images, DType::u8);
    expect_float32(mean);
    expect_dtype(index, DType::i64);
    expect_dtype(offsets, DType::i32);
    expect_dtype(flips, DType::u8);
    expect_float32(lighting);
    expect_float32(out);
    expect_ndim(images, 4);
    if (images.dim(3) != 3)
      throw py::value_error("argument 'images' must be NHWC with 3 channels, got shape " + images.shape_str());
    const int64_t num_images = images.dim(0), height = images.dim(1), width = images.dim(2);
    expect_shape(mean, {height, width, 3});
    expect_ndim(out, 4);
    const int64_t n = out.dim(0), crop = out.dim(2);
    if (out.dim(1) != 3 || out.dim(3) != crop)
      throw py::value_error("argument 'out' must have shape (n, 3, crop, crop), got " + out.shape_str());
    if (crop < 1 || crop > height || crop > width)
      throw py::value_error("crop size " + std::to_string(crop) + " must be between 1 and the image size " +
                            std::to_string(height) + "x" + std::to_string(width));
    expect_shape(index, {n});
    expect_shape(offsets, {n, 2});
    expect_shape(flips, {n});
    expect_shape(lighting, {n, 3});
    expect_disjoint({&out}, {&images, &mean, &index, &offsets, &flips, &lighting});
    Launch l = launch_on({&images, &mean, &index, &offsets, &flips, &lighting, &out}, stream);
    if (!l.on_gpu()) check_parameters_on_host(index, offsets, flips, num_images, height, width, crop);
    PYA_DISPATCH(l, augment, images.data<uint8_t>(), num_images, height, width, mean.data<float>(),
                 index.data<int64_t>(), offsets.data<int32_t>(), flips.data<uint8_t>(), lighting.data<float>(),
                 out.data<float>(), n, crop);
  }, py::arg("images"), py::arg("mean_image"), py::arg("index"), py::arg("offsets"), py::arg("flips"),
     py::arg("lighting"), py::arg("out"), py::arg("stream") = 0,
     "Crop, flip, lighting and mean subtraction: uint8 NHWC images -> float32 NCHW out (see kernels/augment.h).");
}

}  // namespace pya
