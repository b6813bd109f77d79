import CMPI

/// Open engines of this process, and the hook that runs when the application calls MPI_Finalize
/// (an attribute on MPI_COMM_SELF is deleted first thing in MPI_Finalize): it stops every progress
/// thread before MPI goes away, and marks every engine finalised so later calls return KV_EMISUSE
/// instead of calling into a finalised MPI.
enum Lifecycle {
    private static let lock = FTKVLock()
    private static var hookInstalled = false
    private static var engines: [ObjectIdentifier: Engine] = [:]

    static func installFinalizeHook() throws {
        try lock.withLock {
            guard !hookInstalled else { return }
            var keyval: Int32 = 0
            try mpiCheck(MPI_Comm_create_keyval(cmpi_comm_null_copy_fn(), finalizeCallback, &keyval, nil),
                         "MPI_Comm_create_keyval")
            try mpiCheck(MPI_Comm_set_attr(cmpi_comm_self(), keyval, nil), "MPI_Comm_set_attr")
            hookInstalled = true
        }
    }

    static func register(_ engine: Engine) {
        lock.withLock { engines[ObjectIdentifier(engine)] = engine }
    }

    static func unregister(_ engine: Engine) {
        lock.withLock { _ = engines.removeValue(forKey: ObjectIdentifier(engine)) }
    }

    static var openCount: Int { lock.withLock { engines.count } }

    fileprivate static func mpiFinalizing() {
        let open = lock.withLock { () -> [Engine] in
            let list = Array(engines.values)
            engines.removeAll()
            return list
        }
        for engine in open { engine.mpiFinalizing() }
    }
}

private let finalizeCallback: @convention(c) (MPI_Comm?, Int32, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32 = { _, _, _, _ in
    Lifecycle.mpiFinalizing()
    return MPI_SUCCESS
}
