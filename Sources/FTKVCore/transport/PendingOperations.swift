import CMPI

/// MPI operations under way (sends, receives), each with the buffer MPI reads or writes. Tested
/// once per progress round. Past its deadline an operation is cancelled and set aside, buffer
/// included, until MPI ends it (MPI may still use the buffer); at close whatever is left is
/// cancelled and its buffer kept for good rather than freed under MPI.
struct PendingOperations<Info> {
    struct Operation {
        var request: MPI_Request?
        let buffer: MessageBuffer
        let deadline: Deadline
        let info: Info
        let started = monotonicNanos()
    }

    private var operations: [Operation] = []
    private var cancelled: [Operation] = []

    var isEmpty: Bool { operations.isEmpty }

    /// Whether an operation that `counts` started less than `nanos` ago is still under way.
    func anyUnderWay(startedWithin nanos: UInt64, where counts: (Info) -> Bool) -> Bool {
        guard !operations.isEmpty else { return false }
        let now = monotonicNanos()
        return operations.contains { now &- $0.started < nanos && counts($0.info) }
    }

    /// Adds an operation; returns its index until the next sweep.
    @discardableResult
    mutating func add(_ request: MPI_Request?, buffer: MessageBuffer, deadline: Deadline, info: Info) -> Int {
        operations.append(Operation(request: request, buffer: buffer, deadline: deadline, info: info))
        return operations.count - 1
    }

    /// Tests the operation at `index` (just added); if complete, removes it and returns it.
    mutating func complete(at index: Int) throws -> Operation? {
        var flag: Int32 = 0
        try mpiCheck(MPI_Test(&operations[index].request, &flag, cmpi_status_ignore()), "MPI_Test")
        guard flag != 0 else { return nil }
        operations.swapAt(index, operations.count - 1)
        return operations.removeLast()
    }

    /// Tests every operation once: hands completed ones to `done`, cancels and sets aside those
    /// past their deadline (counted in the result's `expired`). Returns whether any completed.
    mutating func sweep(_ done: (Operation) throws -> Void) throws -> (completed: Bool, expired: Int) {
        cancelled.removeAll { op in
            var op = op
            var flag: Int32 = 0
            return MPI_Test(&op.request, &flag, cmpi_status_ignore()) != MPI_SUCCESS || flag != 0
        }
        var completed = false
        var expired = 0
        var i = 0
        while i < operations.count {
            var flag: Int32 = 0
            try mpiCheck(MPI_Test(&operations[i].request, &flag, cmpi_status_ignore()), "MPI_Test")
            if flag != 0 {
                operations.swapAt(i, operations.count - 1)
                try done(operations.removeLast())
                completed = true
            } else if operations[i].deadline.hasPassed {
                MPI_Cancel(&operations[i].request)
                operations.swapAt(i, operations.count - 1)
                cancelled.append(operations.removeLast())
                expired += 1
            } else {
                i += 1
            }
        }
        return (completed, expired)
    }

    /// At close: cancels what is left; buffers MPI may still use are kept for good.
    mutating func abandonAll() {
        for var op in operations + cancelled {
            MPI_Cancel(&op.request)
            var flag: Int32 = 0
            MPI_Test(&op.request, &flag, cmpi_status_ignore())
            if flag == 0 {
                _ = Unmanaged.passRetained(op.buffer)
                MPI_Request_free(&op.request)
            }
        }
        operations.removeAll()
        cancelled.removeAll()
    }
}
