! example.f90 - checkpoint and restore a Fortran array with libftkv.
!     mpifort -c ftkv.f90
!     mpifort example.f90 ftkv.o $(pkg-config --libs ftkv) -o example
!     mpirun -n 4 ./example
program example
    use, intrinsic :: iso_c_binding, only: c_ptr, c_null_ptr
    use mpi
    use ftkv
    implicit none
    integer, parameter :: n = 100
    type(c_ptr) :: kv
    integer :: ierr, rc, rank, i, cnt
    real(8) :: field(n), saved(n)
    character(len=32) :: key

    call MPI_Init(ierr)
    call MPI_Comm_rank(MPI_COMM_WORLD, rank, ierr)

    call ftkv_open(MPI_COMM_WORLD, 'fortran-example', kv, rc)
    if (rc /= KV_OK) call fail('ftkv_open', c_null_ptr)

    field = [(rank + 0.01d0 * i, i = 1, n)]
    write (key, '(a,i0)') 'field/', rank
    call ftkv_put(kv, trim(key), field, rc)        ! checkpoint (local, copied)
    if (rc /= KV_OK) call fail('ftkv_put', kv)
    call ftkv_fence(kv, rc)                         ! now on every replica
    if (rc /= KV_OK) call fail('ftkv_fence', kv)

    field = 0                                       ! "lose" the state ...
    call ftkv_get(kv, trim(key), field, rc, count=cnt)   ! ... and restore it
    if (rc /= KV_OK) call fail('ftkv_get', kv)
    saved = [(rank + 0.01d0 * i, i = 1, n)]
    print '(a,i0,a,i0,a,l1)', 'rank ', rank, ': restored ', cnt, ' values, intact: ', &
        all(field == saved)

    call ftkv_close(kv, rc)
    if (rc /= KV_OK) call fail('ftkv_close', c_null_ptr)
    call MPI_Finalize(ierr)
    if (.not. all(field == saved)) error stop 1

contains

    subroutine fail(what, h)
        character(len=*), intent(in) :: what
        type(c_ptr), intent(in) :: h
        print '(a,i0,5a)', 'rank ', rank, ': ', what, ': ', ftkv_strerror(rc), ': ' // ftkv_errmsg(h)
        call MPI_Abort(MPI_COMM_WORLD, 1, ierr)
    end subroutine fail

end program example
