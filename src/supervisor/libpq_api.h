// libpq, loaded with dlopen on first use. Only a daemon given `--queue postgres://...` needs it,
// and linking it would make every `corral run` and `corral init` start map libpq and its
// dependencies (TLS, Kerberos, LDAP: a dozen libraries). The header (libpq-dev) gives the types;
// the functions come from libpq.so.5 at run time.
#pragma once

#include <libpq-fe.h>

#include <string>

namespace corral {

struct LibPqApi {
  decltype(&::PQconnectdbParams) PQconnectdbParams;
  decltype(&::PQstatus) PQstatus;
  decltype(&::PQerrorMessage) PQerrorMessage;
  decltype(&::PQreset) PQreset;
  decltype(&::PQfinish) PQfinish;
  decltype(&::PQexec) PQexec;
  decltype(&::PQexecParams) PQexecParams;
  decltype(&::PQprepare) PQprepare;
  decltype(&::PQexecPrepared) PQexecPrepared;
  decltype(&::PQresultStatus) PQresultStatus;
  decltype(&::PQresultErrorMessage) PQresultErrorMessage;
  decltype(&::PQntuples) PQntuples;
  decltype(&::PQgetisnull) PQgetisnull;
  decltype(&::PQgetvalue) PQgetvalue;
  decltype(&::PQclear) PQclear;
};

// The loaded API, or nullptr with *error saying what is missing ("dlopen libpq.so.5: ...;
// install Debian's libpq5"). Loaded once per process; thread-safe.
const LibPqApi* LoadLibPq(std::string* error);

}  // namespace corral
