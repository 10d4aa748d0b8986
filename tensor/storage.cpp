#include "storage.h"

#include "backend.h"

namespace mg {

Storage::Storage(std::size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  data_ = backend_for(device).allocate(nbytes, device);
}

Storage::~Storage() { backend_for(device_).deallocate(data_, nbytes_, device_); }

}  // namespace mg
