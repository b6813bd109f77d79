! tests/server/fclient.f90 - a Fortran client job of a store server (ftkv_connect).
! Usage: mpirun -n N fclient file:PORTFILE
! Every rank writes 50 real(8) arrays and a string through the server, fences, then reads back
! the next rank's and checks them exactly; prints "fclient: PASS" on rank 0 when every rank did.
program fclient
    use mpi
    use ftkv
    use, intrinsic :: iso_c_binding
    implicit none
    integer :: ierr, rank, size, i, j, bad, total, peer, n
    type(c_ptr) :: kv
    character(len=4096) :: address
    character(len=64) :: key, text
    real(c_double) :: values(16), got(16)

    call MPI_Init(ierr)
    call MPI_Comm_rank(MPI_COMM_WORLD, rank, ierr)
    call MPI_Comm_size(MPI_COMM_WORLD, size, ierr)
    call get_command_argument(1, address)
    bad = 0
    call ftkv_connect(trim(address), MPI_COMM_WORLD, kv, ierr)
    if (ierr /= KV_OK) then
        if (rank == 0) print '(a,i0,2a)', 'fclient: connect failed: ', ierr, ' ', trim(ftkv_errmsg(c_null_ptr))
        call MPI_Abort(MPI_COMM_WORLD, 1, ierr)
    end if
    do i = 1, 50
        write (key, '(a,i0,a,i0)') 'F/', rank, '/', i
        values = [(real(rank * 1000 + i * 16 + j, c_double) / 7.0_c_double, j = 1, 16)]
        call ftkv_put(kv, trim(key), values, ierr)
        if (ierr /= KV_OK) bad = bad + 1
    end do
    write (key, '(a,i0)') 'F/name/', rank
    write (text, '(a,i0)') 'written by Fortran rank ', rank
    call ftkv_put(kv, trim(key), trim(text), ierr)
    if (ierr /= KV_OK) bad = bad + 1
    call ftkv_fence(kv, ierr)
    if (ierr /= KV_OK) bad = bad + 1
    peer = mod(rank + 1, size)
    do i = 1, 50
        write (key, '(a,i0,a,i0)') 'F/', peer, '/', i
        values = [(real(peer * 1000 + i * 16 + j, c_double) / 7.0_c_double, j = 1, 16)]
        got = 0
        call ftkv_get(kv, trim(key), got, ierr, n)
        if (ierr /= KV_OK .or. n /= 16 .or. any(got /= values)) bad = bad + 1
    end do
    write (key, '(a,i0)') 'F/name/', peer
    write (text, '(a,i0)') 'written by Fortran rank ', peer
    got(1) = 0
    block
        character(len=64) :: back
        call ftkv_get(kv, trim(key), back, ierr)
        if (ierr /= KV_OK .or. trim(back) /= trim(text)) bad = bad + 1
    end block
    call ftkv_close(kv, ierr)
    if (ierr /= KV_OK) bad = bad + 1
    call MPI_Reduce(bad, total, 1, MPI_INTEGER, MPI_SUM, 0, MPI_COMM_WORLD, ierr)
    if (rank == 0) then
        if (total == 0) then
            print '(a,i0,a)', 'fclient: PASS (', size, ' ranks, values read back exactly through the server)'
        else
            print '(a,i0,a)', 'fclient: FAIL (', total, ' checks failed)'
        end if
    end if
    call MPI_Finalize(ierr)
end program fclient
