! ftkv.f90 - Fortran interface to libftkv, the fault-tolerant key-value checkpoint store.
!
! Build this file with your program (.mod files are compiler-specific, so none is installed):
!     mpifort -c $(pkg-config --variable=fortrandir ftkv)/ftkv.f90
!     mpifort prog.f90 ftkv.o $(pkg-config --libs ftkv) -o prog
!
! Every routine mirrors a function of ftkv.h (see there for the semantics) and returns its result
! code in ierr: KV_OK (0) on success, a negative KV_E* code otherwise. The store handle is a
! type(c_ptr). Keys are character(*) and are exactly len(key) bytes long: pass trim(key) for a
! blank-padded variable. Values are real(8) or default-integer rank-1 arrays, character strings,
! or raw memory as type(c_ptr) plus a byte count (for anything else, e.g. c_loc of an array of any
! rank, with storage_size/8 * size bytes).
!
! The raw bind(C) interfaces (kv_open_f, kv_put, ...) are public too.
module ftkv
    use, intrinsic :: iso_c_binding
    use mpi, only: MPI_INFO_NULL
    implicit none
    private

    ! Version of ftkv.h this module mirrors.
    integer, parameter, public :: FTKV_VERSION_MAJOR = 0, FTKV_VERSION_MINOR = 1, &
                                  FTKV_VERSION_PATCH = 0

    ! Result codes (ftkv.h).
    integer, parameter, public :: KV_OK = 0
    integer, parameter, public :: KV_ENOTFOUND = -1  ! the key has no value; not a failure
    integer, parameter, public :: KV_ETOOSMALL = -2  ! value longer than the buffer
    integer, parameter, public :: KV_EINVAL = -3     ! bad argument
    integer, parameter, public :: KV_EMISUSE = -4    ! null/closed handle, MPI not initialised, ...
    integer, parameter, public :: KV_ENOMEM = -5
    integer, parameter, public :: KV_EIO = -6
    integer, parameter, public :: KV_EMPI = -7
    integer, parameter, public :: KV_ETIMEDOUT = -8
    integer, parameter, public :: KV_EINTERNAL = -9
    integer, parameter, public :: KV_EREMOTE = -10   ! another rank refused or failed the request
    integer, parameter, public :: KV_EDATALOSS = -11 ! every copy of some committed data is gone
    integer, parameter, public :: KV_EPROCFAILED = -12 ! a rank the call needed has failed
    integer, parameter, public :: KV_EDENIED = -13   ! kv_connect: the server refused the secret
    integer, parameter, public :: KV_ENOSERVER = -14 ! kv_connect: no server at that port or name

    ! Limits (bytes; names in characters).
    integer(c_size_t), parameter, public :: KV_MAX_KEY_LEN = 65536_c_size_t
    integer(c_size_t), parameter, public :: KV_MAX_VALUE_LEN = 1073741824_c_size_t
    integer, parameter, public :: KV_MAX_NAME_LEN = 128

    ! kv_stat selectors.
    integer, parameter, public :: KV_STAT_RANK = 1, KV_STAT_SIZE = 2, KV_STAT_REPLICAS = 3, &
        KV_STAT_NODES = 4, KV_STAT_LOCAL_KEYS = 5, KV_STAT_LOCAL_BYTES = 6, &
        KV_STAT_PENDING_OPS = 7, KV_STAT_PROGRESS_THREAD = 8, KV_STAT_EPOCH = 9, &
        KV_STAT_REQUESTS_SERVED = 10, KV_STAT_DROPPED_MESSAGES = 11, KV_STAT_VERSION = 12, &
        KV_STAT_REPAIRED_FILES = 13, KV_STAT_RECOVERY_MICROS = 14, KV_STAT_RECOVERY_BYTES = 15, &
        KV_STAT_MESSAGES_SENT = 16, KV_STAT_BYTES_SENT = 17, KV_STAT_TABLE_BYTES = 18

    public :: ftkv_open, ftkv_connect, ftkv_close, ftkv_put, ftkv_get, ftkv_del, ftkv_cas, ftkv_fence, ftkv_commit, &
              ftkv_failed, ftkv_comm, ftkv_locate, ftkv_stat, ftkv_strerror, ftkv_errmsg, ftkv_version
    public :: kv_open_f, kv_connect_f, kv_close, kv_put, kv_get, kv_del, kv_cas, kv_fence, kv_commit, kv_failed, kv_comm_f, &
              kv_locate, kv_stat, kv_strerror, kv_errmsg, kv_version

    ! The C functions. MPI_Fint is a default INTEGER, which is c_int with gfortran and Open MPI.
    interface
        integer(c_int) function kv_open_f(comm, name, namelen, info, kv) bind(C, name="kv_open_f")
            import :: c_int, c_char, c_size_t, c_ptr
            integer(c_int), value :: comm
            character(kind=c_char), dimension(*), intent(in) :: name
            integer(c_size_t), value :: namelen
            integer(c_int), value :: info
            type(c_ptr), intent(out) :: kv
        end function kv_open_f

        integer(c_int) function kv_connect_f(port, portlen, comm, info, kv) bind(C, name="kv_connect_f")
            import :: c_int, c_char, c_size_t, c_ptr
            character(kind=c_char), dimension(*), intent(in) :: port
            integer(c_size_t), value :: portlen
            integer(c_int), value :: comm
            integer(c_int), value :: info
            type(c_ptr), intent(out) :: kv
        end function kv_connect_f

        integer(c_int) function kv_close(kv) bind(C, name="kv_close")
            import :: c_int, c_ptr
            type(c_ptr), intent(inout) :: kv
        end function kv_close

        integer(c_int) function kv_put(kv, key, keylen, value, valuelen) bind(C, name="kv_put")
            import :: c_int, c_char, c_size_t, c_ptr
            type(c_ptr), value :: kv
            character(kind=c_char), dimension(*), intent(in) :: key
            integer(c_size_t), value :: keylen
            type(c_ptr), value :: value
            integer(c_size_t), value :: valuelen
        end function kv_put

        integer(c_int) function kv_get(kv, key, keylen, buf, bufsize, valuelen) bind(C, name="kv_get")
            import :: c_int, c_char, c_size_t, c_ptr
            type(c_ptr), value :: kv
            character(kind=c_char), dimension(*), intent(in) :: key
            integer(c_size_t), value :: keylen
            type(c_ptr), value :: buf
            integer(c_size_t), value :: bufsize
            integer(c_size_t), intent(out) :: valuelen
        end function kv_get

        integer(c_int) function kv_del(kv, key, keylen) bind(C, name="kv_del")
            import :: c_int, c_char, c_size_t, c_ptr
            type(c_ptr), value :: kv
            character(kind=c_char), dimension(*), intent(in) :: key
            integer(c_size_t), value :: keylen
        end function kv_del

        integer(c_int) function kv_cas(kv, key, keylen, expected, expectedlen, desired, desiredlen, swapped) &
                bind(C, name="kv_cas")
            import :: c_int, c_char, c_size_t, c_ptr
            type(c_ptr), value :: kv
            character(kind=c_char), dimension(*), intent(in) :: key
            integer(c_size_t), value :: keylen
            type(c_ptr), value :: expected
            integer(c_size_t), value :: expectedlen
            type(c_ptr), value :: desired
            integer(c_size_t), value :: desiredlen
            integer(c_int), intent(out) :: swapped
        end function kv_cas

        integer(c_int) function kv_comm_f(kv, comm) bind(C, name="kv_comm_f")
            import :: c_int, c_ptr
            type(c_ptr), value :: kv
            integer(c_int), intent(out) :: comm
        end function kv_comm_f

        integer(c_int) function kv_fence(kv) bind(C, name="kv_fence")
            import :: c_int, c_ptr
            type(c_ptr), value :: kv
        end function kv_fence

        integer(c_int) function kv_commit(kv, version) bind(C, name="kv_commit")
            import :: c_int, c_ptr, c_int64_t
            type(c_ptr), value :: kv
            integer(c_int64_t), intent(out) :: version
        end function kv_commit

        integer(c_int) function kv_failed(kv, ranks, maxranks, count) bind(C, name="kv_failed")
            import :: c_int, c_ptr
            type(c_ptr), value :: kv
            integer(c_int), dimension(*), intent(out) :: ranks
            integer(c_int), value :: maxranks
            integer(c_int), intent(out) :: count
        end function kv_failed

        integer(c_int) function kv_locate(kv, key, keylen, ranks, maxranks, nranks) &
                bind(C, name="kv_locate")
            import :: c_int, c_char, c_size_t, c_ptr
            type(c_ptr), value :: kv
            character(kind=c_char), dimension(*), intent(in) :: key
            integer(c_size_t), value :: keylen
            integer(c_int), dimension(*), intent(out) :: ranks
            integer(c_int), value :: maxranks
            integer(c_int), intent(out) :: nranks
        end function kv_locate

        integer(c_int) function kv_stat(kv, what, value) bind(C, name="kv_stat")
            import :: c_int, c_int64_t, c_ptr
            type(c_ptr), value :: kv
            integer(c_int), value :: what
            integer(c_int64_t), intent(out) :: value   ! uint64_t in C
        end function kv_stat

        type(c_ptr) function kv_strerror(code) bind(C, name="kv_strerror")
            import :: c_int, c_ptr
            integer(c_int), value :: code
        end function kv_strerror

        type(c_ptr) function kv_errmsg(kv) bind(C, name="kv_errmsg")
            import :: c_ptr
            type(c_ptr), value :: kv
        end function kv_errmsg

        type(c_ptr) function kv_version(major, minor, patch) bind(C, name="kv_version")
            import :: c_int, c_ptr
            integer(c_int), intent(out) :: major, minor, patch
        end function kv_version

        integer(c_size_t) function c_strlen(s) bind(C, name="strlen")
            import :: c_size_t, c_ptr
            type(c_ptr), value :: s
        end function c_strlen
    end interface

    ! ftkv_put(kv, key, values, ierr) for real(8)/integer arrays and strings;
    ! ftkv_put(kv, key, ptr, nbytes, ierr) for raw memory.
    interface ftkv_put
        module procedure ftkv_put_real8, ftkv_put_int, ftkv_put_string, ftkv_put_bytes
    end interface ftkv_put

    ! ftkv_get(kv, key, values, ierr [, count]) for real(8)/integer arrays: count = elements the
    ! stored value holds (also on KV_ETOOSMALL; 0 on KV_ENOTFOUND); elements beyond it are left
    ! unchanged. ftkv_get(kv, key, string, ierr [, length]): the rest is blank-padded.
    ! ftkv_get(kv, key, ptr, bufsize, valuelen, ierr) for raw memory (ptr = c_null_ptr: length only).
    interface ftkv_get
        module procedure ftkv_get_real8, ftkv_get_int, ftkv_get_string, ftkv_get_bytes
    end interface ftkv_get

    ! A valid address for empty buffers (C may not accept NULL with a length of 0).
    character(kind=c_char), dimension(1), target, save :: empty_buf = c_null_char

contains

    ! Open (create) the store `name` over the `use mpi` communicator comm. COLLECTIVE.
    ! info: an MPI_Info handle with ftkv_* keys (default MPI_INFO_NULL).
    subroutine ftkv_open(comm, name, kv, ierr, info)
        integer, intent(in) :: comm
        character(len=*), intent(in) :: name
        type(c_ptr), intent(out) :: kv
        integer, intent(out) :: ierr
        integer, intent(in), optional :: info
        integer :: finfo
        finfo = MPI_INFO_NULL
        if (present(info)) finfo = info
        kv = c_null_ptr
        ierr = int(kv_open_f(int(comm, c_int), name, int(len(name), c_size_t), &
                             int(finfo, c_int), kv))
    end subroutine ftkv_open

    ! Connect to a store server (`ftkv serve`): port is "file:PATH", a port name or a published
    ! name (docs/client-server.md). COLLECTIVE over comm. info: ftkv_secret, ftkv_timeout.
    subroutine ftkv_connect(port, comm, kv, ierr, info)
        character(len=*), intent(in) :: port
        integer, intent(in) :: comm
        type(c_ptr), intent(out) :: kv
        integer, intent(out) :: ierr
        integer, intent(in), optional :: info
        integer :: finfo
        finfo = MPI_INFO_NULL
        if (present(info)) finfo = info
        kv = c_null_ptr
        ierr = int(kv_connect_f(port, int(len(port), c_size_t), int(comm, c_int), int(finfo, c_int), kv))
    end subroutine ftkv_connect

    ! Flush (as ftkv_fence) and release the store; kv becomes c_null_ptr. COLLECTIVE.
    subroutine ftkv_close(kv, ierr)
        type(c_ptr), intent(inout) :: kv
        integer, intent(out) :: ierr
        ierr = int(kv_close(kv))
    end subroutine ftkv_close

    ! Make every earlier put/del of every rank visible on every rank. COLLECTIVE.
    subroutine ftkv_fence(kv, ierr)
        type(c_ptr), intent(in) :: kv
        integer, intent(out) :: ierr
        ierr = int(kv_fence(kv))
    end subroutine ftkv_fence

    ! Fence, then write every rank's data durably as a new version; version receives its number.
    ! COLLECTIVE. A later ftkv_open (on any number of ranks) loads the newest complete version.
    subroutine ftkv_commit(kv, version, ierr)
        type(c_ptr), intent(in) :: kv
        integer(c_int64_t), intent(out) :: version
        integer, intent(out) :: ierr
        ierr = int(kv_commit(kv, version))
    end subroutine ftkv_commit

    subroutine ftkv_del(kv, key, ierr)
        type(c_ptr), intent(in) :: kv
        character(len=*), intent(in) :: key
        integer, intent(out) :: ierr
        ierr = int(kv_del(kv, key, int(len(key), c_size_t)))
    end subroutine ftkv_del

    ! Compare-and-swap on key (ftkv.h, kv_cas): if its value is the string `expected`, make it
    ! `desired`; swapped tells whether it did. Omit expected to expect no value (put-if-absent),
    ! omit desired to delete the key (take). LOCAL; linearizable across ranks. For other types,
    ! call kv_cas with c_loc of the values.
    subroutine ftkv_cas(kv, key, swapped, ierr, expected, desired)
        type(c_ptr), intent(in) :: kv
        character(len=*), intent(in) :: key
        logical, intent(out) :: swapped
        integer, intent(out) :: ierr
        character(len=*), target, intent(in), optional :: expected, desired
        type(c_ptr) :: pe, pd
        integer(c_size_t) :: ne, nd
        integer(c_int) :: s
        pe = c_null_ptr
        ne = 0
        pd = c_null_ptr
        nd = 0
        if (present(expected)) then
            pe = c_loc(empty_buf)
            ne = int(len(expected), c_size_t)
            if (ne > 0) pe = c_loc(expected)
        end if
        if (present(desired)) then
            pd = c_loc(empty_buf)
            nd = int(len(desired), c_size_t)
            if (nd > 0) pd = c_loc(desired)
        end if
        s = 0
        ierr = int(kv_cas(kv, key, int(len(key), c_size_t), pe, ne, pd, nd, s))
        swapped = s /= 0
    end subroutine ftkv_cas

    ! The ranks (of the communicator given to ftkv_open) known to have failed, ascending; count is
    ! the full number (ranks may be shorter). LOCAL.
    subroutine ftkv_failed(kv, ranks, count, ierr)
        type(c_ptr), intent(in) :: kv
        integer(c_int), dimension(:), intent(out) :: ranks
        integer, intent(out) :: count
        integer, intent(out) :: ierr
        integer(c_int) :: n
        integer(c_int) :: dummy(1)
        n = 0
        if (size(ranks) > 0) then
            ierr = int(kv_failed(kv, ranks, int(size(ranks), c_int), n))
        else
            ierr = int(kv_failed(kv, dummy, 0_c_int, n))
        end if
        count = int(n)
    end subroutine ftkv_failed

    ! The live members' communicator (a `use mpi` handle): the one given to ftkv_open until a
    ! member fails, then the survivors' (owned by the store: do not free it). LOCAL.
    subroutine ftkv_comm(kv, comm, ierr)
        type(c_ptr), intent(in) :: kv
        integer, intent(out) :: comm
        integer, intent(out) :: ierr
        integer(c_int) :: c
        c = 0
        ierr = int(kv_comm_f(kv, c))
        comm = int(c)
    end subroutine ftkv_comm

    subroutine ftkv_put_bytes(kv, key, value, nbytes, ierr)
        type(c_ptr), intent(in) :: kv
        character(len=*), intent(in) :: key
        type(c_ptr), intent(in) :: value
        integer(c_size_t), intent(in) :: nbytes
        integer, intent(out) :: ierr
        ierr = int(kv_put(kv, key, int(len(key), c_size_t), value, nbytes))
    end subroutine ftkv_put_bytes

    subroutine ftkv_put_real8(kv, key, values, ierr)
        type(c_ptr), intent(in) :: kv
        character(len=*), intent(in) :: key
        real(c_double), dimension(:), contiguous, target, intent(in) :: values
        integer, intent(out) :: ierr
        type(c_ptr) :: p
        p = c_loc(empty_buf)
        if (size(values) > 0) p = c_loc(values)
        ierr = int(kv_put(kv, key, int(len(key), c_size_t), p, &
                          int(size(values), c_size_t) * c_sizeof(0.0_c_double)))
    end subroutine ftkv_put_real8

    subroutine ftkv_put_int(kv, key, values, ierr)
        type(c_ptr), intent(in) :: kv
        character(len=*), intent(in) :: key
        integer(c_int), dimension(:), contiguous, target, intent(in) :: values
        integer, intent(out) :: ierr
        type(c_ptr) :: p
        p = c_loc(empty_buf)
        if (size(values) > 0) p = c_loc(values)
        ierr = int(kv_put(kv, key, int(len(key), c_size_t), p, &
                          int(size(values), c_size_t) * c_sizeof(0_c_int)))
    end subroutine ftkv_put_int

    subroutine ftkv_put_string(kv, key, value, ierr)
        type(c_ptr), intent(in) :: kv
        character(len=*), intent(in) :: key
        character(len=*), target, intent(in) :: value
        integer, intent(out) :: ierr
        type(c_ptr) :: p
        p = c_loc(empty_buf)
        if (len(value) > 0) p = c_loc(value)
        ierr = int(kv_put(kv, key, int(len(key), c_size_t), p, int(len(value), c_size_t)))
    end subroutine ftkv_put_string

    subroutine ftkv_get_bytes(kv, key, buf, bufsize, valuelen, ierr)
        type(c_ptr), intent(in) :: kv
        character(len=*), intent(in) :: key
        type(c_ptr), intent(in) :: buf
        integer(c_size_t), intent(in) :: bufsize
        integer(c_size_t), intent(out) :: valuelen
        integer, intent(out) :: ierr
        ierr = int(kv_get(kv, key, int(len(key), c_size_t), buf, bufsize, valuelen))
    end subroutine ftkv_get_bytes

    subroutine ftkv_get_real8(kv, key, values, ierr, count)
        type(c_ptr), intent(in) :: kv
        character(len=*), intent(in) :: key
        real(c_double), dimension(:), contiguous, target, intent(inout) :: values
        integer, intent(out) :: ierr
        integer, intent(out), optional :: count
        integer(c_size_t) :: n, elem
        type(c_ptr) :: p
        elem = c_sizeof(0.0_c_double)
        p = c_loc(empty_buf)
        if (size(values) > 0) p = c_loc(values)
        n = 0
        ierr = int(kv_get(kv, key, int(len(key), c_size_t), p, int(size(values), c_size_t) * elem, n))
        if (present(count)) count = int(n / elem)
    end subroutine ftkv_get_real8

    subroutine ftkv_get_int(kv, key, values, ierr, count)
        type(c_ptr), intent(in) :: kv
        character(len=*), intent(in) :: key
        integer(c_int), dimension(:), contiguous, target, intent(inout) :: values
        integer, intent(out) :: ierr
        integer, intent(out), optional :: count
        integer(c_size_t) :: n, elem
        type(c_ptr) :: p
        elem = c_sizeof(0_c_int)
        p = c_loc(empty_buf)
        if (size(values) > 0) p = c_loc(values)
        n = 0
        ierr = int(kv_get(kv, key, int(len(key), c_size_t), p, int(size(values), c_size_t) * elem, n))
        if (present(count)) count = int(n / elem)
    end subroutine ftkv_get_int

    subroutine ftkv_get_string(kv, key, value, ierr, length)
        type(c_ptr), intent(in) :: kv
        character(len=*), intent(in) :: key
        character(len=*), target, intent(inout) :: value
        integer, intent(out) :: ierr
        integer, intent(out), optional :: length
        integer(c_size_t) :: n
        type(c_ptr) :: p
        p = c_loc(empty_buf)
        if (len(value) > 0) p = c_loc(value)
        n = 0
        ierr = int(kv_get(kv, key, int(len(key), c_size_t), p, int(len(value), c_size_t), n))
        if (ierr == KV_OK .and. n < len(value)) value(n + 1:) = ' '
        if (present(length)) length = int(n)
    end subroutine ftkv_get_string

    ! The ranks holding key, primary first; nranks is the full count (ranks may be shorter).
    subroutine ftkv_locate(kv, key, ranks, nranks, ierr)
        type(c_ptr), intent(in) :: kv
        character(len=*), intent(in) :: key
        integer(c_int), dimension(:), intent(out) :: ranks
        integer, intent(out) :: nranks
        integer, intent(out) :: ierr
        integer(c_int) :: n
        integer(c_int) :: dummy(1)
        n = 0
        if (size(ranks) > 0) then
            ierr = int(kv_locate(kv, key, int(len(key), c_size_t), ranks, int(size(ranks), c_int), n))
        else
            ierr = int(kv_locate(kv, key, int(len(key), c_size_t), dummy, 0_c_int, n))
        end if
        nranks = int(n)
    end subroutine ftkv_locate

    ! One statistic (KV_STAT_*) of this rank.
    subroutine ftkv_stat(kv, what, value, ierr)
        type(c_ptr), intent(in) :: kv
        integer, intent(in) :: what
        integer(c_int64_t), intent(out) :: value
        integer, intent(out) :: ierr
        value = 0
        ierr = int(kv_stat(kv, int(what, c_int), value))
    end subroutine ftkv_stat

    ! The name of a result code.
    function ftkv_strerror(code) result(text)
        integer, intent(in) :: code
        character(len=:), allocatable :: text
        text = c_string(kv_strerror(int(code, c_int)))
    end function ftkv_strerror

    ! Detail of the last failed call on kv (c_null_ptr: of the last failed call with no handle).
    function ftkv_errmsg(kv) result(text)
        type(c_ptr), intent(in) :: kv
        character(len=:), allocatable :: text
        text = c_string(kv_errmsg(kv))
    end function ftkv_errmsg

    ! The loaded library's version, "MAJOR.MINOR.PATCH".
    function ftkv_version(major, minor, patch) result(text)
        integer, intent(out), optional :: major, minor, patch
        character(len=:), allocatable :: text
        integer(c_int) :: a, b, c
        text = c_string(kv_version(a, b, c))
        if (present(major)) major = int(a)
        if (present(minor)) minor = int(b)
        if (present(patch)) patch = int(c)
    end function ftkv_version

    ! A copy of a NUL-terminated C string ("" for a null pointer).
    function c_string(p) result(text)
        type(c_ptr), intent(in) :: p
        character(len=:), allocatable :: text
        character(kind=c_char), dimension(:), pointer :: chars
        integer :: i, n
        if (.not. c_associated(p)) then
            text = ''
            return
        end if
        n = int(c_strlen(p))
        call c_f_pointer(p, chars, [n])
        allocate (character(len=n) :: text)
        do i = 1, n
            text(i:i) = chars(i)
        end do
    end function c_string

end module ftkv
