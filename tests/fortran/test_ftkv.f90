! test_ftkv.f90 - the ftkv Fortran module against the installed libftkv, under mpirun.
! Every rank puts a real(8) array under a key naming its rank, fences, then reads every rank's
! array and compares it bit for bit; also missing keys, short buffers, strings, integers, deletes,
! kv_stat and error texts, compare-and-swap, ftkv_comm and ftkv_failed; then ftkv_commit and a reopen that loads the committed version back.
! Prints PASS or FAIL on rank 0; exits non-zero on failure.
program test_ftkv
    use, intrinsic :: iso_c_binding
    use, intrinsic :: iso_fortran_env, only: int64, output_unit
    use mpi
    use ftkv
    implicit none

    integer, parameter :: n = 1000
    type(c_ptr) :: kv
    integer :: ierr, rc, rank, nranks, r, cnt, failures, total, i, slen, nh
    real(8) :: mine(n), want(n), got(n), short(n - 1)
    integer(c_int) :: ints(5), gotints(5), holders(8)
    integer(c_int64_t) :: stat
    character(len=64) :: key, text
    character(len=:), allocatable :: msg

    failures = 0
    call MPI_Init(ierr)
    call MPI_Comm_rank(MPI_COMM_WORLD, rank, ierr)
    call MPI_Comm_size(MPI_COMM_WORLD, nranks, ierr)

    call ftkv_open(MPI_COMM_WORLD, 'fortran-test', kv, rc)
    if (rc /= KV_OK) then
        print '(a,i0,4a)', 'rank ', rank, ': ftkv_open: ', ftkv_strerror(rc), ': ', &
            ftkv_errmsg(c_null_ptr)
        call MPI_Abort(MPI_COMM_WORLD, 2, ierr)
    end if
    call expect(c_associated(kv), 'ftkv_open returned a handle')

    ! Every rank's array under its own key.
    call fill(rank, mine)
    write (key, '(a,i0)') 'fortran/r8/', rank
    call ftkv_put(kv, trim(key), mine, rc)
    call check(rc, KV_OK, 'put '//trim(key))
    ints = [(rank * 10 + i, i = 1, 5)]
    write (key, '(a,i0)') 'fortran/int/', rank
    call ftkv_put(kv, trim(key), ints, rc)
    call check(rc, KV_OK, 'put '//trim(key))
    write (key, '(a,i0)') 'fortran/str/', rank
    write (text, '(a,i0)') 'greetings from Fortran rank ', rank
    call ftkv_put(kv, trim(key), trim(text), rc)
    call check(rc, KV_OK, 'put '//trim(key))
    write (key, '(a,i0)') 'fortran/tmp/', rank
    call ftkv_put(kv, trim(key), mine(1:3), rc)
    call check(rc, KV_OK, 'put '//trim(key))

    call ftkv_fence(kv, rc)
    call check(rc, KV_OK, 'fence')

    ! Read-after-fence of every rank's keys, bitwise.
    do r = 0, nranks - 1
        call fill(r, want)
        got = -1.0d0
        write (key, '(a,i0)') 'fortran/r8/', r
        call ftkv_get(kv, trim(key), got, rc, count=cnt)
        call check(rc, KV_OK, 'get '//trim(key))
        call expect(cnt == n, 'element count of '//trim(key))
        call expect(all(transfer(got, 0_int64, n) == transfer(want, 0_int64, n)), &
                    'bitwise contents of '//trim(key))

        write (key, '(a,i0)') 'fortran/int/', r
        gotints = -1
        call ftkv_get(kv, trim(key), gotints, rc, count=cnt)
        call check(rc, KV_OK, 'get '//trim(key))
        call expect(cnt == 5 .and. all(gotints == [(r * 10 + i, i = 1, 5)]), 'contents of '//trim(key))

        write (key, '(a,i0)') 'fortran/str/', r
        text = repeat('x', len(text))
        call ftkv_get(kv, trim(key), text, rc, length=slen)
        call check(rc, KV_OK, 'get '//trim(key))
        block
            character(len=64) :: expected
            write (expected, '(a,i0)') 'greetings from Fortran rank ', r
            call expect(text == expected .and. slen == len_trim(expected), 'contents of '//trim(key))
        end block
    end do

    ! A missing key is KV_ENOTFOUND with a count of 0, and not a failure.
    cnt = 99
    call ftkv_get(kv, 'fortran/no/such/key', got, rc, count=cnt)
    call check(rc, KV_ENOTFOUND, 'get of a missing key')
    call expect(cnt == 0, 'count of a missing key is 0')

    ! Too small a buffer: KV_ETOOSMALL, nothing written, the true length reported.
    short = 7.0d0
    write (key, '(a,i0)') 'fortran/r8/', modulo(rank + 1, nranks)
    call ftkv_get(kv, trim(key), short, rc, count=cnt)
    call check(rc, KV_ETOOSMALL, 'get into a short buffer')
    call expect(cnt == n, 'true length reported on KV_ETOOSMALL')
    call expect(all(short == 7.0d0), 'nothing written on KV_ETOOSMALL')

    ! Length only, through the raw-memory form.
    block
        integer(c_size_t) :: vlen
        call ftkv_get(kv, trim(key), c_null_ptr, 0_c_size_t, vlen, rc)
        call check(rc, KV_OK, 'length-only get')
        call expect(vlen == int(n, c_size_t) * 8, 'length-only get reports the byte count')
    end block

    ! Delete, fence: gone everywhere.
    write (key, '(a,i0)') 'fortran/tmp/', rank
    call ftkv_del(kv, trim(key), rc)
    call check(rc, KV_OK, 'del '//trim(key))
    call ftkv_fence(kv, rc)
    call check(rc, KV_OK, 'fence after del')
    do r = 0, nranks - 1
        write (key, '(a,i0)') 'fortran/tmp/', r
        call ftkv_get(kv, trim(key), got, rc)
        call check(rc, KV_ENOTFOUND, 'get of deleted '//trim(key))
    end do

    ! Bad arguments are reported, not fatal.
    call ftkv_put(kv, '', mine, rc)
    call check(rc, KV_EINVAL, 'put with an empty key')

    ! kv_stat, kv_locate, texts.
    call ftkv_stat(kv, KV_STAT_RANK, stat, rc)
    call check(rc, KV_OK, 'stat rank')
    call expect(stat == rank, 'KV_STAT_RANK is the rank')
    call ftkv_stat(kv, KV_STAT_SIZE, stat, rc)
    call check(rc, KV_OK, 'stat size')
    call expect(stat == nranks, 'KV_STAT_SIZE is the size')
    call ftkv_locate(kv, 'fortran/r8/0', holders, nh, rc)
    call check(rc, KV_OK, 'locate')
    call expect(nh >= 1 .and. nh <= nranks, 'locate reports 1..size ranks')
    ! Compare-and-swap: every rank races to create one key; exactly one wins, and the counter
    ! each rank then increments once reads the number of ranks.
    block
        logical :: swapped, won
        integer :: winners, comm, csize, nfailed, seen
        integer(c_int) :: dead(4)
        character(len=16) :: cur, nxt
        call ftkv_cas(kv, 'fortran/once', won, rc, desired='taken')
        call check(rc, KV_OK, 'cas put-if-absent')
        call ftkv_cas(kv, 'fortran/once', swapped, rc, expected='wrong', desired='x')
        call check(rc, KV_OK, 'cas with a wrong expected value')
        call expect(.not. swapped, 'a wrong expected value does not swap')
        do
            call ftkv_get(kv, 'fortran/counter', cur, rc, slen)
            if (rc == KV_ENOTFOUND) then
                seen = 0
                call ftkv_cas(kv, 'fortran/counter', swapped, rc, desired='1')
            else
                call check(rc, KV_OK, 'get of the counter')
                read (cur(1:slen), *) seen
                write (nxt, '(i0)') seen + 1
                call ftkv_cas(kv, 'fortran/counter', swapped, rc, expected=cur(1:slen), desired=trim(nxt))
            end if
            call check(rc, KV_OK, 'cas increment')
            if (swapped .or. rc /= KV_OK) exit
        end do
        call ftkv_fence(kv, rc)
        call check(rc, KV_OK, 'fence after cas')
        winners = 0
        if (won) winners = 1
        call MPI_Allreduce(MPI_IN_PLACE, winners, 1, MPI_INTEGER, MPI_SUM, MPI_COMM_WORLD, ierr)
        call expect(winners == 1, 'exactly one rank wins a put-if-absent')
        call ftkv_get(kv, 'fortran/counter', cur, rc, slen)
        call check(rc, KV_OK, 'get of the counter')
        write (nxt, '(i0)') nranks
        call expect(cur(1:slen) == trim(nxt), 'the counter reads the number of ranks')
        call ftkv_comm(kv, comm, rc)
        call check(rc, KV_OK, 'ftkv_comm')
        call MPI_Comm_size(comm, csize, ierr)
        call expect(csize == nranks, 'ftkv_comm has every rank')
        call ftkv_failed(kv, dead, nfailed, rc)
        call check(rc, KV_OK, 'ftkv_failed')
        call expect(nfailed == 0, 'no rank failed')
    end block
    msg = ftkv_strerror(KV_ENOTFOUND)
    call expect(len(msg) > 0, 'kv_strerror gives a text')
    msg = ftkv_version()
    call expect(len(msg) > 0, 'kv_version gives a text')
    if (rank == 0) print '(2a)', 'test_ftkv: libftkv ', msg

    call ftkv_close(kv, rc)
    call check(rc, KV_OK, 'close')
    call expect(.not. c_associated(kv), 'close nulls the handle')
    call ftkv_fence(kv, rc)
    call check(rc, KV_EMISUSE, 'fence on a closed (null) handle')

    ! Durable commit, then a reopen loads the committed version back, bit for bit.
    block
        integer :: info
        integer(c_int64_t) :: version, loaded
        call MPI_Info_create(info, ierr)
        call MPI_Info_set(info, 'ftkv_dir', 'build/tests/fortran-ftkv-data', ierr)
        call MPI_Info_set(info, 'ftkv_load', 'none', ierr)
        call ftkv_open(MPI_COMM_WORLD, 'fortran-commit', kv, rc, info)
        call check(rc, KV_OK, 'open for commit')
        call fill(rank + 100, mine)
        write (key, '(a,i0)') 'commit/', rank
        call ftkv_put(kv, trim(key), mine, rc)
        call check(rc, KV_OK, 'put '//trim(key))
        call ftkv_commit(kv, version, rc)
        call check(rc, KV_OK, 'commit')
        call expect(version >= 1, 'commit returns a version number')
        call ftkv_put(kv, trim(key), mine(1:2), rc)
        call check(rc, KV_OK, 'put after the commit (not committed)')
        call ftkv_close(kv, rc)
        call check(rc, KV_OK, 'close after commit')
        call MPI_Info_set(info, 'ftkv_load', 'latest', ierr)
        call ftkv_open(MPI_COMM_WORLD, 'fortran-commit', kv, rc, info)
        call check(rc, KV_OK, 'reopen')
        call ftkv_stat(kv, KV_STAT_VERSION, loaded, rc)
        call check(rc, KV_OK, 'stat version')
        call expect(loaded == version, 'the reopened store loaded the committed version')
        do r = 0, nranks - 1
            call fill(r + 100, want)
            got = -1.0d0
            write (key, '(a,i0)') 'commit/', r
            call ftkv_get(kv, trim(key), got, rc, count=cnt)
            call check(rc, KV_OK, 'get committed '//trim(key))
            call expect(cnt == n .and. all(transfer(got, 0_int64, n) == transfer(want, 0_int64, n)), &
                        'committed array back bit for bit')
        end do
        call ftkv_close(kv, rc)
        call check(rc, KV_OK, 'close after reopen')
        call MPI_Info_free(info, ierr)
    end block

    call MPI_Allreduce(failures, total, 1, MPI_INTEGER, MPI_SUM, MPI_COMM_WORLD, ierr)
    if (rank == 0) then
        if (total == 0) then
            print '(a,i0,a)', 'PASS: Fortran test on ', nranks, ' ranks'
        else
            print '(a,i0,a,i0,a)', 'FAIL: Fortran test on ', nranks, ' ranks: ', total, ' failed checks'
        end if
        flush (output_unit)
    end if
    call MPI_Finalize(ierr)
    if (total /= 0) error stop 1

contains

    ! Values that use every bit of the mantissa, different for every rank and index.
    subroutine fill(r, a)
        integer, intent(in) :: r
        real(8), intent(out) :: a(:)
        integer :: j
        do j = 1, size(a)
            a(j) = real(r, 8) * 1.0d6 + real(j, 8) / 3.0d0 + 1.0d0 / real(r + j + 7, 8)
        end do
    end subroutine fill

    subroutine check(got_rc, want_rc, what)
        integer, intent(in) :: got_rc, want_rc
        character(len=*), intent(in) :: what
        if (got_rc /= want_rc) then
            failures = failures + 1
            print '(a,i0,3a,i0,3a,i0,3a)', 'rank ', rank, ': ', what, ': got ', got_rc, ' (', &
                ftkv_strerror(got_rc), '), expected ', want_rc, ' [', ftkv_errmsg(kv), ']'
        end if
    end subroutine check

    subroutine expect(cond, what)
        logical, intent(in) :: cond
        character(len=*), intent(in) :: what
        if (.not. cond) then
            failures = failures + 1
            print '(a,i0,2a)', 'rank ', rank, ': check failed: ', what
        end if
    end subroutine expect

end program test_ftkv
