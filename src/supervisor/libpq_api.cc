#include "supervisor/libpq_api.h"

#include <dlfcn.h>

namespace corral {

const LibPqApi* LoadLibPq(std::string* error) {
  static std::string load_error;
  static const LibPqApi* api = []() -> const LibPqApi* {
    void* h = dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      load_error = std::string("dlopen libpq.so.5: ") + dlerror() + " (install Debian's libpq5)";
      return nullptr;
    }
    static LibPqApi a;
    bool ok = true;
    auto sym = [&](auto* field, const char* name) {
      *field = reinterpret_cast<std::remove_pointer_t<decltype(field)>>(dlsym(h, name));
      if (*field == nullptr) {
        load_error = std::string("libpq.so.5 has no ") + name;
        ok = false;
      }
    };
    sym(&a.PQconnectdbParams, "PQconnectdbParams");
    sym(&a.PQstatus, "PQstatus");
    sym(&a.PQerrorMessage, "PQerrorMessage");
    sym(&a.PQreset, "PQreset");
    sym(&a.PQfinish, "PQfinish");
    sym(&a.PQexec, "PQexec");
    sym(&a.PQexecParams, "PQexecParams");
    sym(&a.PQprepare, "PQprepare");
    sym(&a.PQexecPrepared, "PQexecPrepared");
    sym(&a.PQresultStatus, "PQresultStatus");
    sym(&a.PQresultErrorMessage, "PQresultErrorMessage");
    sym(&a.PQntuples, "PQntuples");
    sym(&a.PQgetisnull, "PQgetisnull");
    sym(&a.PQgetvalue, "PQgetvalue");
    sym(&a.PQclear, "PQclear");
    return ok ? &a : nullptr;
  }();
  if (api == nullptr && error != nullptr) *error = load_error;
  return api;
}

}  // namespace corral
