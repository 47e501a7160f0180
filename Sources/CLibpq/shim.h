#ifndef KUSU_CLIBPQ_SHIM_H
#define KUSU_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#endif
