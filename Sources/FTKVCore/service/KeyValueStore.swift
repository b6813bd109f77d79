/// What a kv_store handle does, whichever side of it holds the data: an embedded store (Engine,
/// kv_open) or a connection to a store server (RemoteStore, kv_connect). The C entry points and
/// the Swift API call through this.
public protocol KeyValueStore: AnyObject {
    func put(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) throws
    func get(key: UnsafeRawBufferPointer, into buffer: UnsafeMutableRawBufferPointer?) throws -> GetOutcome
    func del(key: UnsafeRawBufferPointer) throws
    func compareAndSwap(key: UnsafeRawBufferPointer, expected: UnsafeRawBufferPointer?,
                        desired: UnsafeRawBufferPointer?) throws -> Bool
    func fence() throws
    func commit() throws -> UInt64
    func flushed(_ version: UInt64) throws -> Bool
    func failed() throws -> [Int32]
    func communicator() throws -> MPIComm
    func locate(key: UnsafeRawBufferPointer) throws -> [Int32]
    func stat(_ what: StatKind) throws -> UInt64
    func close() throws
}

extension Engine: KeyValueStore {}
