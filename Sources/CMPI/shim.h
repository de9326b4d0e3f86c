// Shim for Debian's Open MPI (libopenmpi-dev). Open MPI's handles (MPI_COMM_WORLD,
// MPI_DOUBLE, MPI_SUM, ...) are macros over addresses of global structs, which Swift's
// importer cannot see, so each one used by Swift is re-exported as a static inline accessor.
#pragma once
#include <mpi.h>

static inline MPI_Comm cnl_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm cnl_mpi_comm_null(void) { return MPI_COMM_NULL; }
static inline MPI_Datatype cnl_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype cnl_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype cnl_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype cnl_mpi_int32(void) { return MPI_INT32_T; }
static inline MPI_Datatype cnl_mpi_uint8(void) { return MPI_UINT8_T; }
static inline MPI_Datatype cnl_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Op cnl_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op cnl_mpi_max(void) { return MPI_MAX; }
static inline MPI_Op cnl_mpi_min(void) { return MPI_MIN; }
static inline MPI_Errhandler cnl_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int cnl_mpi_success(void) { return MPI_SUCCESS; }
static inline int cnl_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
static inline MPI_Status *cnl_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline int cnl_mpi_any_source(void) { return MPI_ANY_SOURCE; }
static inline int cnl_mpi_comm_type_shared(void) { return MPI_COMM_TYPE_SHARED; }
static inline MPI_Info cnl_mpi_info_null(void) { return MPI_INFO_NULL; }
static inline MPI_Win cnl_mpi_win_null(void) { return MPI_WIN_NULL; }
